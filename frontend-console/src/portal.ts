// The hosted customer portal: /portal#token=<customer session token>. The token stays in the
// fragment (never sent in a request line, never in a server log); the page is the widgets.
import "./style.css";
import { createClient } from "graphql-ws";
import { graphql } from "./gql";
import { loadWidgets } from "./widgets";

const PortalCustomer = graphql(`
  query PortalCustomer($customerId: String!) {
    customer(customerId: $customerId) {
      customerId
      name
      plan {
        name
        items {
          meterApiName
        }
      }
      currentUsage {
        meterApiName
      }
    }
  }
`);

const root = document.querySelector<HTMLElement>("#portal")!;

function show(text: string): void {
  const p = document.createElement("p");
  p.className = "error";
  p.setAttribute("role", "alert");
  p.textContent = text;
  root.replaceChildren(p);
}

/** The token's customer, from the WebSocket's connection_ack (the token says whose it is). */
function whoIs(token: string): Promise<string> {
  const url = new URL("/graphql", window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return new Promise((resolve, reject) => {
    const client = createClient({
      url: url.toString(),
      connectionParams: { token },
      lazy: false,
      retryAttempts: 0,
      onNonLazyError: () => undefined, // a refused token is answered below, not logged
      on: {
        connected: (_socket, payload) => {
          const id = (payload as { customerId?: unknown } | undefined)?.customerId;
          void client.dispose();
          if (typeof id === "string" && id) resolve(id);
          else reject(new Error("this link does not hold a customer session token"));
        },
        closed: (event) => {
          const reason = (event as { reason?: string }).reason;
          reject(new Error(reason || "the session token was refused"));
        },
      },
    });
  });
}

async function start(): Promise<void> {
  const token = new URLSearchParams(window.location.hash.slice(1)).get("token") ?? "";
  if (!token) {
    show("This portal link has no token: ask your provider for a new link.");
    return;
  }
  let customerId: string;
  try {
    customerId = await whoIs(token);
  } catch (error) {
    show(`This portal link no longer works (${(error as Error).message}). Ask for a new one.`);
    return;
  }
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify({ query: PortalCustomer.toString(), variables: { customerId } }),
  });
  const body = (await response.json()) as {
    data?: { customer: { name: string; plan: { name: string; items: { meterApiName: string }[] } | null; currentUsage: { meterApiName: string }[] } | null };
  };
  const customer = body.data?.customer;
  await loadWidgets();
  const title = document.querySelector("#portal-title")!;
  title.textContent = customer?.name || customerId;
  const plan = document.querySelector("#portal-plan")!;
  plan.textContent = customer?.plan ? `Plan: ${customer.plan.name}` : "";
  const meters = new Set([
    ...(customer?.plan?.items.map((i) => i.meterApiName) ?? []),
    ...(customer?.currentUsage.map((u) => u.meterApiName) ?? []),
  ]);
  const make = (tag: string, attrs: Record<string, string> = {}) => {
    const element = document.createElement(tag);
    element.setAttribute("token", token);
    for (const [name, value] of Object.entries(attrs)) element.setAttribute(name, value);
    return element;
  };
  root.replaceChildren(
    make("meterflow-invoice"),
    make("meterflow-wallet"),
    ...[...meters].map((meter) => make("meterflow-usage", { meter, class: "wide" })),
    make("meterflow-alerts"),
  );
}

void start();
