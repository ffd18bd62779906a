// One WebSocket per (api-url, token) shared by every widget on the page, plus HTTP queries.
import { createClient, type Client } from "graphql-ws";

/** The token was refused (expired, revoked, forged): nothing will work until a new one. */
export class TokenError extends Error {
  override name = "TokenError";
}

/** The server answered with GraphQL errors (code = extensions.code when present). */
export class GraphQLRequestError extends Error {
  override name = "GraphQLRequestError";
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

interface GraphQLErrorLike {
  message: string;
  extensions?: { code?: string };
}

export function toGraphQLError(errors: readonly GraphQLErrorLike[]): GraphQLRequestError {
  const first = errors[0];
  return new GraphQLRequestError(first?.message ?? "request failed", first?.extensions?.code);
}

function isCloseEvent(value: unknown): value is { code: number; reason: string } {
  return typeof value === "object" && value !== null && "code" in value && "reason" in value;
}

/** Turn whatever a sink or fetch threw into one of the errors above. */
export function explain(error: unknown): Error {
  if (error instanceof Error) return error;
  if (isCloseEvent(error)) {
    if (error.code === 4403) return new TokenError(error.reason || "session token refused");
    return new Error(`connection closed (${error.code}${error.reason ? `: ${error.reason}` : ""})`);
  }
  if (Array.isArray(error)) return toGraphQLError(error as GraphQLErrorLike[]);
  return new Error("connection failed");
}

export class Connection {
  readonly client: Client;
  /** Resolves to the token's customer id (from connection_ack), or rejects with TokenError. */
  readonly customerId: Promise<string>;
  users = 0;

  constructor(
    readonly apiUrl: string,
    readonly token: string,
  ) {
    let resolve!: (id: string) => void;
    let reject!: (error: Error) => void;
    this.customerId = new Promise<string>((ok, fail) => {
      resolve = ok;
      reject = fail;
    });
    this.customerId.catch(() => undefined); // observed by the widgets; never "unhandled"
    const wsUrl = new URL("/graphql", apiUrl);
    wsUrl.protocol = wsUrl.protocol === "https:" ? "wss:" : "ws:";
    this.client = createClient({
      url: wsUrl.toString(),
      connectionParams: { token },
      lazy: false,
      keepAlive: 20_000,
      retryAttempts: 1_000,
      // A refused token will not get better by retrying; a dropped network may.
      shouldRetry: (event) => isCloseEvent(event) && event.code !== 4403,
      on: {
        connected: (_socket, payload) => {
          const id = (payload as { customerId?: unknown } | undefined)?.customerId;
          if (typeof id === "string" && id) resolve(id);
          else reject(new TokenError("this is not a customer session token"));
        },
        closed: (event) => {
          if (isCloseEvent(event) && event.code === 4403) reject(explain(event));
        },
        error: (error) => reject(explain(error)),
      },
    });
  }

  /** One GraphQL query over HTTP (Authorization: Bearer <token>). */
  async query<T>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
    const response = await fetch(new URL("/graphql", this.apiUrl), {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${this.token}` },
      body: JSON.stringify({ query, variables }),
    });
    let body: { data?: T; errors?: GraphQLErrorLike[] } = {};
    try {
      body = await response.json();
    } catch {
      throw new Error(`the server answered ${response.status} without JSON`);
    }
    if (response.status === 401) {
      throw new TokenError(body.errors?.[0]?.message ?? "session token refused");
    }
    if (body.errors?.length) throw toGraphQLError(body.errors);
    if (!response.ok || body.data === undefined) {
      throw new Error(`the server answered ${response.status}`);
    }
    return body.data;
  }

  /** Subscribe; returns the unsubscribe function. */
  subscribe<T>(
    query: string,
    variables: Record<string, unknown>,
    next: (data: T) => void,
    error: (error: Error) => void,
  ): () => void {
    return this.client.subscribe<T>(
      { query, variables },
      {
        next: (result) => {
          if (result.errors?.length) error(toGraphQLError(result.errors));
          else if (result.data) next(result.data as T);
        },
        error: (e) => error(explain(e)),
        complete: () => undefined,
      },
    );
  }
}

const connections = new Map<string, Connection>();

export function acquire(apiUrl: string, token: string): Connection {
  const key = `${apiUrl}\n${token}`;
  let connection = connections.get(key);
  if (!connection) {
    connection = new Connection(apiUrl, token);
    connections.set(key, connection);
  }
  connection.users += 1;
  return connection;
}

export function release(connection: Connection): void {
  connection.users -= 1;
  if (connection.users <= 0) {
    connections.delete(`${connection.apiUrl}\n${connection.token}`);
    void connection.client.dispose();
  }
}
