// The /graphql page: GraphiQL (bundled) after asking for a key, kept like the console's.
import { storedKey, storeKey } from "./api";

const form = document.querySelector<HTMLFormElement>("#ide-sign-in")!;
const host = document.querySelector<HTMLElement>("#graphiql")!;

async function open(key: string): Promise<void> {
  form.hidden = true;
  host.hidden = false;
  const { mountGraphiQL } = await import("./graphiql-mount");
  mountGraphiQL(host, key);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const key = String(new FormData(form).get("apiKey") ?? "").trim();
  if (!key) return;
  storeKey(key);
  void open(key);
});

if (storedKey()) void open(storedKey());
