// The test bed's OpenID Connect provider (npm's oidc-provider, pinned by testbed/up), for
// Rosetta's login and external-platform tests. Not for anything else: in-memory sessions, a
// signing key kept in a file, users with passwords from a JSON file.
//   node provider.mjs CONFIG.json
// CONFIG: {issuer, host, port, pid_file, keys_file, api_resource, clients: [{client_id, client_secret,
// callback_path, access_token_format}], users: [{name, password, groups, email}]}. Writes pid_file
// once it listens.
import crypto from 'node:crypto';
import fs from 'node:fs';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const users = new Map(config.users.map((user) => [user.name, user]));
const API_SCOPES = 'read tasks files software admin';
const formats = new Map(config.clients.map((client) => [client.client_id, client.access_token_format]));

// One RSA signing key, made once and kept: tokens and cached JWKS outlive a restart.
function signingKeys() {
  if (!fs.existsSync(config.keys_file)) {
    const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
    const jwk = { ...privateKey.export({ format: 'jwk' }), kid: crypto.randomUUID(), use: 'sig', alg: 'RS256' };
    fs.writeFileSync(config.keys_file, JSON.stringify({ keys: [jwk] }), { mode: 0o600 });
  }
  return JSON.parse(fs.readFileSync(config.keys_file, 'utf8'));
}

// The platform's callback on any loopback port the tests choose (and nothing else).
function loopbackRedirect(uri, path) {
  try {
    const url = new URL(uri);
    return url.protocol === 'http:' && ['localhost', '127.0.0.1'].includes(url.hostname) && url.pathname.startsWith(path);
  } catch {
    return false;
  }
}

function claimsOf(user) {
  return {
    sub: user.name,
    preferred_username: user.name,
    name: user.name,
    email: user.email,
    email_verified: true,
    groups: user.groups,
  };
}

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    redirect_uris: [`http://localhost/${client.callback_path}`],
    post_logout_redirect_uris: ['http://localhost/'],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks: signingKeys(),
  pkce: { required: () => true, methods: ['S256'] },
  findAccount: async (ctx, id) => {
    const user = users.get(id);
    return user && { accountId: id, claims: async () => claimsOf(user) };
  },
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', ...API_SCOPES.split(' ')],
  conformIdTokenClaims: false, // the ID token carries the profile and groups claims itself
  // Access tokens for the Rosetta API (resource indicators) name their user like the ID token does.
  extraTokenClaims: async (ctx, token) => {
    const user = users.get(token.accountId);
    return user && token.aud ? { preferred_username: user.name, groups: user.groups } : undefined;
  },
  features: {
    devInteractions: { enabled: false },
    introspection: { enabled: true },
    revocation: { enabled: true },
    rpInitiatedLogout: {
      enabled: true,
      logoutSource: async (ctx, form) => {
        // Confirmed without a second page: a test bed, not a site a stranger could trick.
        ctx.body = `<!DOCTYPE html><title>Log out</title>${form}<script>document.forms[0].submit()</script>`
          .replace('</form>', '<input type="hidden" name="logout" value="yes"></form>');
      },
    },
    resourceIndicators: {
      enabled: true,
      defaultResource: async () => undefined,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (ctx, resource, client) => {
        if (resource !== config.api_resource) throw new errors.InvalidTarget();
        return {
          scope: API_SCOPES,
          audience: config.api_resource,
          accessTokenTTL: 3600,
          // JWTs (checked against the JWKS), or opaque tokens for clients that test introspection.
          accessTokenFormat: formats.get(client.clientId) || 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // First-party clients: every login is granted what it asked for, without a consent page.
  loadExistingGrant: async (ctx) => {
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId });
    grant.addOIDCScope(ctx.oidc.params.scope || 'openid');
    if (ctx.oidc.params.resource) grant.addResourceScope(ctx.oidc.params.resource, ctx.oidc.params.scope || '');
    await grant.save();
    return grant;
  },
  interactions: { url: async (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: { Session: 3600, Interaction: 600, Grant: 3600, AccessToken: 3600, IdToken: 3600, AuthorizationCode: 60 },
  cookies: { keys: [crypto.randomBytes(32).toString('hex')] },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><title>Error</title><h1>${out.error}</h1><p>${escapeHtml(out.error_description || '')}</p>`;
  },
});

// Registered redirect URIs are checked by function: the platform's callback on any loopback port.
const { Client } = provider;
const byPath = new Map(config.clients.map((client) => [client.client_id, `/${client.callback_path}`]));
Client.prototype.redirectUriAllowed = function redirectUriAllowed(uri) {
  return loopbackRedirect(uri, byPath.get(this.clientId));
};
Client.prototype.postLogoutRedirectUriAllowed = function postLogoutRedirectUriAllowed(uri) {
  return loopbackRedirect(uri, '/');
};

function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, problem) {
  return `<!DOCTYPE html><html><head><meta charset="utf-8"><title>Test bed login</title></head><body>
<h1>Test bed identity provider</h1>
${problem ? `<p role="alert">${escapeHtml(problem)}</p>` : ''}
<form method="post" action="/interaction/${uid}/login">
<label for="username">Username</label><input id="username" name="username" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Sign in</button>
</form></body></html>`;
}

async function formOf(req) {
  let body = '';
  for await (const chunk of req) body += chunk;
  return new URLSearchParams(body);
}

// The interaction pages: a login form (a password per user); consent is never asked.
provider.use(async (ctx, next) => {
  const match = ctx.path.match(/^\/interaction\/([\w-]+)(\/login)?$/);
  if (!match) return next();
  ctx.set('Cache-Control', 'no-store');
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  if (details.uid !== match[1]) throw new errors.SessionNotFound('interaction mismatch');
  if (ctx.method === 'GET') {
    if (details.prompt.name === 'login') {
      ctx.type = 'html';
      ctx.body = loginPage(details.uid);
      return undefined;
    }
    return provider.interactionFinished(ctx.req, ctx.res, {}, { mergeWithLastSubmission: true });
  }
  if (ctx.method === 'POST' && match[2]) {
    const form = await formOf(ctx.req);
    const user = users.get(form.get('username') || '');
    if (!user || user.password !== form.get('password')) {
      ctx.status = 200;
      ctx.type = 'html';
      ctx.body = loginPage(details.uid, 'Wrong username or password.');
      return undefined;
    }
    return provider.interactionFinished(ctx.req, ctx.res, { login: { accountId: user.name } }, { mergeWithLastSubmission: false });
  }
  return next();
});

provider.proxy = false;
const server = provider.listen(config.port, config.host, () => {
  fs.writeFileSync(config.pid_file, `${process.pid}\n`);
  console.log(`oidc provider ${config.issuer} listening on ${config.host}:${config.port}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
