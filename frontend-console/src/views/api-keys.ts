// API keys: create with a scope (the key is shown once), list by prefix, revoke.
import { html, nothing } from "lit";
import { customElement, state } from "lit/decorators.js";
import { message, request } from "../api";
import { dateTime } from "../format";
import { graphql } from "../gql";
import type { ApiKeyScope, ConsoleApiKeysQuery } from "../gql/graphql";
import { View } from "../view";

const Keys = graphql(`
  query ConsoleApiKeys {
    apiKeys {
      id
      name
      prefix
      scope
      createdAt
      revokedAt
    }
  }
`);

const Create = graphql(`
  mutation ConsoleCreateApiKey($input: CreateApiKeyInput!) {
    createApiKey(input: $input) {
      __typename
      ... on CreatedApiKey {
        secret
      }
      ... on Error {
        message
      }
    }
  }
`);

const Revoke = graphql(`
  mutation ConsoleRevokeApiKey($id: ID!) {
    revokeApiKey(id: $id) {
      __typename
    }
  }
`);

@customElement("mf-api-keys")
export class MfApiKeys extends View {
  @state() private keys: ConsoleApiKeysQuery["apiKeys"] = [];
  @state() private secret = "";
  private started = false;

  protected override willUpdate(): void {
    if (!this.started) {
      this.started = true;
      void this.load();
    }
  }

  private async load(): Promise<void> {
    await this.guard(async () => {
      this.keys = (await request(Keys)).apiKeys;
    });
  }

  private async create(event: SubmitEvent): Promise<void> {
    event.preventDefault();
    const form = new FormData(event.target as HTMLFormElement);
    try {
      const result = (
        await request(Create, {
          input: { name: String(form.get("name")), scope: String(form.get("scope")) as ApiKeyScope },
        })
      ).createApiKey;
      if (result.__typename === "CreatedApiKey") {
        this.secret = result.secret;
        this.notice = "";
        await this.load();
      } else {
        this.notice = `Not created: ${"message" in result ? result.message : "refused"}`;
      }
    } catch (error) {
      this.notice = `Not created: ${message(error)}`;
    }
  }

  private async revoke(id: string, name: string): Promise<void> {
    try {
      await request(Revoke, { id });
      this.notice = `${name} revoked: it stops working at once.`;
      await this.load();
    } catch (error) {
      this.notice = message(error);
    }
  }

  override render() {
    return html`<h1>API keys</h1>
      <form class="panel" aria-label="Create API key" @submit=${this.create}>
        <label>Name <input name="name" required /></label>
        <label
          >Scope
          <select name="scope">
            <option value="INGEST">Ingest (writes events only)</option>
            <option value="ADMIN">Admin (everything)</option>
          </select></label
        >
        <button type="submit">Create key</button>
      </form>
      ${this.secret
        ? html`<div class="panel secret" role="status">
            <p>The new key, shown once — store it now:</p>
            <code class="secret-value">${this.secret}</code>
            <button type="button" @click=${() => (this.secret = "")}>I stored it</button>
          </div>`
        : nothing}
      ${this.renderNotice()} ${this.renderState()}
      ${this.status === "ready"
        ? html`<table aria-label="API keys">
            <thead><tr><th scope="col">Name</th><th scope="col">Prefix</th><th scope="col">Scope</th>
              <th scope="col">Created</th><th scope="col">Status</th><th scope="col">Actions</th></tr></thead>
            <tbody>
              ${this.keys.map(
                (key) => html`<tr>
                  <td>${key.name}</td><td><code>${key.prefix}…</code></td><td>${key.scope}</td>
                  <td>${dateTime(key.createdAt)}</td>
                  <td>${key.revokedAt ? `revoked ${dateTime(key.revokedAt)}` : "active"}</td>
                  <td>${key.revokedAt
                    ? nothing
                    : html`<button type="button" class="danger" @click=${() => this.revoke(key.id, key.name)}>
                        Revoke <span class="sr-only">${key.name}</span></button>`}</td>
                </tr>`,
              )}
            </tbody>
          </table>`
        : nothing}`;
  }
}
