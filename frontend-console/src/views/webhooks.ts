// Webhooks: endpoints (create with the secret shown once, enable/disable, delete) and their
// deliveries with replay.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import { message, request } from "../api";
import { dateTime } from "../format";
import { graphql } from "../gql";
import type { ConsoleWebhooksQuery } from "../gql/graphql";
import { View } from "../view";

const Webhooks = graphql(`
  query ConsoleWebhooks {
    webhookEndpoints {
      id
      url
      eventTypes
      description
      enabled
      disabledAt
      createdAt
    }
    webhookDeliveries(first: 100) {
      edges {
        node {
          id
          endpointId
          eventType
          status
          createdAt
          deliveredAt
          attempts {
            at
            statusCode
            error
          }
        }
      }
    }
  }
`);

const Create = graphql(`
  mutation ConsoleCreateWebhook($input: CreateWebhookEndpointInput!) {
    createWebhookEndpoint(input: $input) {
      __typename
      ... on CreatedWebhookEndpoint {
        secret
      }
      ... on Error {
        message
      }
    }
  }
`);

const Update = graphql(`
  mutation ConsoleUpdateWebhook($input: UpdateWebhookEndpointInput!) {
    updateWebhookEndpoint(input: $input) {
      __typename
      ... on Error {
        message
      }
    }
  }
`);

const Delete = graphql(`
  mutation ConsoleDeleteWebhook($id: ID!) {
    deleteWebhookEndpoint(id: $id) {
      __typename
    }
  }
`);

const Replay = graphql(`
  mutation ConsoleReplayDelivery($id: ID!) {
    replayWebhookDelivery(id: $id) {
      __typename
    }
  }
`);

@customElement("mf-webhooks")
export class MfWebhooks extends View {
  @state() private data: ConsoleWebhooksQuery | undefined;
  private started = false;

  protected override willUpdate(): void {
    if (!this.started) {
      this.started = true;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    await this.guard(async () => {
      this.data = await request(Webhooks);
    });
  }

  private async run(work: Promise<unknown>, done: string): Promise<void> {
    try {
      await work;
      this.notice = done;
      await this.load();
    } catch (error) {
      this.notice = message(error);
    }
  }

  private async create(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    const types = String(form.get("types") ?? "*")
      .split(",")
      .map((t) => t.trim())
      .filter(Boolean);
    try {
      const result = (
        await request(Create, {
          input: {
            url: String(form.get("url")),
            eventTypes: types.length ? types : ["*"],
            description: String(form.get("description") ?? "") || null,
          },
        })
      ).createWebhookEndpoint;
      this.notice =
        result.__typename === "CreatedWebhookEndpoint"
          ? `Endpoint created. Its signing secret, shown once — store it now: ${result.secret}`
          : `Not created: ${"message" in result ? result.message : "refused"}`;
      await this.load();
    } catch (error) {
      this.notice = `Not created: ${message(error)}`;
    }
  }

  override render() {
    const data = this.data;
    return html`<h1>Webhooks</h1>
      <form class="panel" aria-label="Create webhook endpoint" @submit=${this.create}>
        <h2>New endpoint</h2>
        <label>URL <input name="url" type="url" required placeholder="https://" /></label>
        <label>Event types (comma-separated) <input name="types" value="*" /></label>
        <label>Description <input name="description" /></label>
        <button type="submit">Create endpoint</button>
      </form>
      ${this.renderNotice()} ${this.renderState()}
      ${data
        ? html`<h2>Endpoints</h2>
            ${data.webhookEndpoints.length
              ? html`<table aria-label="Webhook endpoints">
                  <thead><tr><th scope="col">URL</th><th scope="col">Events</th><th scope="col">Status</th>
                    <th scope="col">Created</th><th scope="col">Actions</th></tr></thead>
                  <tbody>
                    ${data.webhookEndpoints.map(
                      (ep) => html`<tr>
                        <td>${ep.url}</td><td>${ep.eventTypes.join(", ")}</td>
                        <td>${ep.enabled ? "enabled" : `disabled${ep.disabledAt ? " by meterflow" : ""}`}</td>
                        <td>${dateTime(ep.createdAt)}</td>
                        <td>
                          <button type="button" @click=${() =>
                            this.run(request(Update, { input: { id: ep.id, enabled: !ep.enabled } }),
                              ep.enabled ? "Endpoint disabled." : "Endpoint enabled.")}>
                            ${ep.enabled ? "Disable" : "Enable"} <span class="sr-only">${ep.url}</span></button>
                          <button type="button" class="danger" @click=${() =>
                            this.run(request(Delete, { id: ep.id }), "Endpoint deleted.")}>
                            Delete <span class="sr-only">${ep.url}</span></button>
                        </td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
              : this.empty("No endpoints.")}
            <h2>Deliveries</h2>
            ${data.webhookDeliveries.edges.length
              ? html`<table aria-label="Webhook deliveries">
                  <thead><tr><th scope="col">Created</th><th scope="col">Event</th><th scope="col">Status</th>
                    <th scope="col">Attempts</th><th scope="col">Actions</th></tr></thead>
                  <tbody>
                    ${data.webhookDeliveries.edges.map(
                      ({ node: d }) => html`<tr>
                        <td>${dateTime(d.createdAt)}</td><td>${d.eventType}</td><td>${d.status}</td>
                        <td>${d.attempts.map((a) => `${a.statusCode ?? a.error ?? "?"}`).join(", ")}</td>
                        <td><button type="button" @click=${() =>
                          this.run(request(Replay, { id: d.id }), "Delivery replayed.")}>
                          Replay <span class="sr-only">${d.eventType} ${d.id}</span></button></td>
                      </tr>`,
                    )}
                  </tbody>
                </table>`
              : nothing}`
        : nothing}`;
  }
}
