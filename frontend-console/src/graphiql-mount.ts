// GraphiQL from npm (React, CodeMirror), bundled and served by meterflow: no CDN. This module
// is its own chunk, imported only by the GraphQL view and the /graphql page.
import { createElement } from "react";
import { createRoot, type Root } from "react-dom/client";
import { GraphiQL } from "graphiql";
import { parse, type OperationDefinitionNode } from "graphql";
import { createClient, type Client } from "graphql-ws";
import "graphiql/style.css";

interface Params {
  query: string;
  variables?: Record<string, unknown> | null;
  operationName?: string | null;
}

function isSubscription(params: Params): boolean {
  try {
    const operations = parse(params.query).definitions.filter(
      (d): d is OperationDefinitionNode => d.kind === "OperationDefinition",
    );
    const chosen = params.operationName
      ? operations.find((o) => o.name?.value === params.operationName)
      : operations[0];
    return chosen?.operation === "subscription";
  } catch {
    return false;
  }
}

const DEFAULT_QUERY = `# meterflow's GraphQL API, with this console's key.
query {
  meters { meterApiName status }
  customers(first: 5) { edges { node { customerId name currentInvoice { total currency } } } }
}
`;

/** Mount GraphiQL in `element`, sending `apiKey`; returns the function that unmounts it. */
export function mountGraphiQL(element: HTMLElement, apiKey: string): () => void {
  let socket: Client | undefined;
  const fetcher = (params: Params) => {
    if (isSubscription(params)) {
      if (!socket) {
        const url = new URL("/graphql", window.location.href);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        socket = createClient({ url: url.toString(), connectionParams: { apiKey } });
      }
      return socket.iterate({
        query: params.query,
        variables: params.variables ?? undefined,
        operationName: params.operationName ?? undefined,
      });
    }
    return fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": apiKey },
      body: JSON.stringify(params),
    }).then((response) => response.json());
  };
  const root: Root = createRoot(element);
  root.render(
    createElement(GraphiQL, {
      fetcher: fetcher as never,
      defaultQuery: DEFAULT_QUERY,
    }),
  );
  return () => {
    root.unmount();
    void socket?.dispose();
  };
}
