// A real OpenID Connect provider for the sign-in test: the certified
// `oidc-provider` package, on loopback, with its development login page
// (any password) and consent granted on first use.
//
// usage: node provider.mjs PORT CLIENT_SECRET_FILE REDIRECT_URI POST_LOGOUT_URI USERS_JSON
//   USERS_JSON: {"alice": ["treasury-approvers"], …}: each person's groups.
// Prints `listening` when it accepts connections.

import { readFileSync } from "node:fs";
import Provider from "oidc-provider";

const [port, secretFile, redirectUri, postLogoutUri, usersJson] = process.argv.slice(2);
const users = JSON.parse(usersJson);
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "agent-governance",
      client_secret: readFileSync(secretFile, "utf8").trim(),
      redirect_uris: [redirectUri],
      post_logout_redirect_uris: [postLogoutUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_basic",
    },
  ],
  scopes: ["openid", "groups", "email"],
  claims: { openid: ["sub"], groups: ["groups"], email: ["email"] },
  // The groups go into the ID token, as most providers can be told to do.
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: true },
    rpInitiatedLogout: { enabled: true },
  },
  cookies: { keys: ["agent-governance-test-provider"] },
  ttl: { IdToken: 3600, AccessToken: 3600, AuthorizationCode: 60, Session: 3600, Interaction: 600, Grant: 3600 },
  async findAccount(ctx, id) {
    if (!Object.hasOwn(users, id)) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, groups: users[id], email: `${id}@example.com` };
      },
    };
  },
  // A first-party application: the person is not asked to consent.
  async loadExistingGrant(ctx) {
    const grantId =
      ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope("openid groups email");
    await grant.save();
    return grant;
  },
});
// Plain HTTP on loopback only.
provider.proxy = false;

const server = provider.listen(Number(port), "127.0.0.1", () => {
  console.log("listening");
});
process.on("SIGTERM", () => server.close(() => process.exit(0)));
