// The OpenID Provider of the sign-in tests (tests/api/oidc.rs): oidc-provider 9 (installed by
// .ci/oidc-tools), one confidential client, no browser. Started by the tests with the machine's
// Node, in the directory oidc-provider is installed in:
//   REDIRECT_URI=http://localhost:8000/auth/test/callback node --input-type=module -e "<this>"
// It listens on a free loopback port, prints `{"port": N}` on its first line, and exits when
// its stdin closes (the tests hold it; should they die, it goes too).
// Login is automatic: GET /interaction/:uid logs in `login_hint` (or "alice") at once, and
// consent is pre-granted (loadExistingGrant), so a cookie-keeping HTTP client that follows
// redirects goes  /auth -> /interaction/:uid -> /auth/:uid -> REDIRECT_URI?code=..&state=..&iss=..
// Accounts: sub -> `<sub>@example.com`, email_verified false only for sub `unverified`.
// Test controls (loopback only, test use):
//   POST /__test/jwks?mode=other   publish an unrelated key at jwks_uri (ID tokens keep being
//                                  signed by the real key -> "signed by another key")
//   POST /__test/jwks?mode=normal  back to the real key
import { generateKeyPairSync } from 'node:crypto';
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const CLIENT_ID = process.env.CLIENT_ID ?? 'saaskit-test';
const CLIENT_SECRET = process.env.CLIENT_SECRET ?? 'saaskit-test-secret';
const REDIRECT_URI = process.env.REDIRECT_URI ?? 'http://localhost:8000/auth/test/callback';

function rsaJwk(kid) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { ...privateKey.export({ format: 'jwk' }), kid, use: 'sig', alg: 'RS256' };
}
const signing = rsaJwk('real-key');
const other = rsaJwk('other-key');
const publicPart = ({ kty, n, e, kid, use, alg }) => ({ kty, n, e, kid, use, alg });
let jwksMode = 'normal';

function start(issuer) {
  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: CLIENT_SECRET,
      redirect_uris: [REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic', // what openidconnect-rs sends by default
    }],
    jwks: { keys: [signing] },
    cookies: { keys: ['test-cookie-key'] },
    pkce: { required: () => true }, // default: required only for public clients
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    conformIdTokenClaims: false, // else email goes to userinfo only, not into the ID token
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    async findAccount(ctx, sub) {
      return {
        accountId: sub,
        async claims() {
          return { sub, email: `${sub}@example.com`, email_verified: sub !== 'unverified' };
        },
      };
    },
    // First-party client: consent is implied.
    async loadExistingGrant(ctx) {
      const grantId = ctx.oidc.result?.consent?.grantId
        || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
      if (grantId) return ctx.oidc.provider.Grant.find(grantId);
      const grant = new ctx.oidc.provider.Grant({
        clientId: ctx.oidc.client.clientId, accountId: ctx.oidc.session.accountId,
      });
      grant.addOIDCScope('openid email profile');
      await grant.save();
      return grant;
    },
  });

  provider.use(async (ctx, next) => {
    if (ctx.method === 'POST' && ctx.path === '/__test/jwks') {
      jwksMode = ctx.query.mode === 'other' ? 'other' : 'normal';
      ctx.body = { mode: jwksMode };
      return;
    }
    const m = ctx.path.match(/^\/interaction\/([^/]+)$/);
    if (ctx.method === 'GET' && m) {
      const details = await provider.interactionDetails(ctx.req, ctx.res);
      if (details.prompt.name !== 'login') {
        ctx.status = 400; ctx.body = `unexpected prompt ${details.prompt.name}`; return;
      }
      const accountId = details.params.login_hint || 'alice';
      const to = await provider.interactionResult(ctx.req, ctx.res,
        { login: { accountId } }, { mergeWithLastSubmission: false });
      ctx.redirect(to);
      return;
    }
    await next();
    if (ctx.path === '/jwks' && jwksMode === 'other') {
      ctx.body = { keys: [publicPart(other)] };
    }
  });
  return provider;
}

// The port is the issuer's: listen first, then make the provider for it.
const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const provider = start(`http://127.0.0.1:${port}`);
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ port })}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
