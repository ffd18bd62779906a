// The console's GraphQL client: HTTP with X-API-Key, subscriptions over one graphql-ws socket.
import { createClient, type Client } from "graphql-ws";
import type { TypedDocumentString } from "./gql/graphql";

const KEY = "meterflow.apiKey";

/** The server refused the key (401): the console goes back to the sign-in form. */
export class AuthError extends Error {
  override name = "AuthError";
}

export class RequestError extends Error {
  override name = "RequestError";
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

interface ErrorLike {
  message: string;
  extensions?: { code?: string };
}

export function storedKey(): string {
  return sessionStorage.getItem(KEY) ?? "";
}

export function storeKey(key: string): void {
  if (key) sessionStorage.setItem(KEY, key);
  else sessionStorage.removeItem(KEY);
}

type Listener = (message: string) => void;
const unauthorized = new Set<Listener>();

/** Called with the server's message when a request answers 401. */
export function onUnauthorized(listener: Listener): () => void {
  unauthorized.add(listener);
  return () => unauthorized.delete(listener);
}

export async function request<R, V>(
  document: TypedDocumentString<R, V>,
  variables?: V,
  key: string = storedKey(),
): Promise<R> {
  let response: Response;
  try {
    response = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key },
      body: JSON.stringify({ query: document.toString(), variables: variables ?? {} }),
    });
  } catch {
    throw new RequestError("meterflow cannot be reached: check that the server runs");
  }
  let body: { data?: R; errors?: ErrorLike[] } = {};
  try {
    body = await response.json();
  } catch {
    throw new RequestError(`the server answered ${response.status} without JSON`);
  }
  if (response.status === 401) {
    const message = body.errors?.[0]?.message ?? "the API key was refused";
    for (const listener of unauthorized) listener(message);
    throw new AuthError(message);
  }
  if (body.errors?.length) {
    const first = body.errors[0];
    throw new RequestError(first.message, first.extensions?.code);
  }
  if (!response.ok || body.data === undefined) {
    throw new RequestError(`the server answered ${response.status}`);
  }
  return body.data;
}

let socket: { key: string; client: Client } | undefined;

function client(): Client {
  const key = storedKey();
  if (!socket || socket.key !== key) {
    void socket?.client.dispose();
    const url = new URL("/graphql", window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = {
      key,
      client: createClient({
        url: url.toString(),
        connectionParams: { apiKey: key },
        lazy: true,
        keepAlive: 20_000,
        retryAttempts: 1_000,
        shouldRetry: () => true,
      }),
    };
  }
  return socket.client;
}

export function closeSocket(): void {
  void socket?.client.dispose();
  socket = undefined;
}

/** Follow a subscription; returns the function that stops it. */
export function subscribe<R, V>(
  document: TypedDocumentString<R, V>,
  variables: V,
  next: (data: R) => void,
  error: (message: string) => void,
): () => void {
  return client().subscribe<R>(
    { query: document.toString(), variables: variables as Record<string, unknown> },
    {
      next: (result) => {
        if (result.errors?.length) error(result.errors[0].message);
        else if (result.data) next(result.data as R);
      },
      error: (e) => error(e instanceof Error ? e.message : "the live connection failed"),
      complete: () => undefined,
    },
  );
}

export function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
