// A real OpenID Certified provider (panva's oidc-provider) for jitbot's
// integration tests. Everything it needs arrives in environment variables:
//
//   IDP_ACCOUNTS   path of a JSON file {"alice": {"email", "email_verified",
//                  "groups": [...], "name"}}; re-read on every lookup, so a
//                  test can change someone's groups mid-run. "groups" may be
//                  a string (sent as is); null leaves the groups claim out,
//                  and "email_verified": null leaves that claim out (as
//                  Entra ID does)
//   IDP_CLIENTS    JSON array of client registrations
//   IDP_PORT       port to listen on (0 = any); the chosen port is printed
//                  as "ready <port>" on stdout once the provider serves
//   IDP_GROUPS_IN_ID_TOKEN  "0" to put groups only in userinfo (default "1")
//   IDP_ID_TOKEN_TTL        ID token lifetime in seconds (default 3600)
//
// Test controls (never part of a real IdP):
//   POST /__test/rotate          new signing key (new kid) and a fresh
//                                provider state, as after a key rotation
//                                and an IdP restart (refresh tokens die)
//   POST /__test/advance?ms=N    move the provider's clock forward, in step
//                                with the manual clock of jitbot's tests
//   POST /__test/hold?ms=N[&count=K]  answer token requests N ms late (0 =
//                                at once; only the next K if given), so a
//                                test can change jitbot's state while a
//                                refresh is at the IdP
//   GET  /__test/held            how many token requests are being held
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';

import Provider from 'oidc-provider';

// The provider reads time through Date.now(); tests move it forward.
let offsetMs = 0;
const realNow = Date.now.bind(Date);
Date.now = () => realNow() + offsetMs;

const accountsFile = process.env.IDP_ACCOUNTS;
const clients = JSON.parse(process.env.IDP_CLIENTS || '[]');
const groupsInIdToken = process.env.IDP_GROUPS_IN_ID_TOKEN !== '0';
const idTokenTtl = Number(process.env.IDP_ID_TOKEN_TTL || 3600);

function readAccounts() {
  return JSON.parse(fs.readFileSync(accountsFile, 'utf8'));
}

function newKey() {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: crypto.randomBytes(8).toString('hex'), alg: 'RS256', use: 'sig' };
}

function makeProvider(issuer, key) {
  const provider = new Provider(issuer, {
    clients,
    jwks: { keys: [key] },
    cookies: { keys: ['jitbot-test-idp-cookie-key'] },
    pkce: { required: () => true },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      profile: ['name', 'preferred_username'],
      groups: ['groups'],
    },
    conformIdTokenClaims: !groupsInIdToken,
    features: {
      devInteractions: { enabled: true },
      userinfo: { enabled: true },
    },
    rotateRefreshToken: true,
    ttl: {
      IdToken: idTokenTtl,
      AccessToken: 3600,
      RefreshToken: 86400,
      Grant: 86400,
      Session: 86400,
      Interaction: 600,
      AuthorizationCode: 60,
    },
    async findAccount(ctx, id) {
      const account = readAccounts()[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return {
            sub: id,
            email: account.email,
            email_verified: account.email_verified === null ? undefined : account.email_verified !== false,
            name: account.name || id,
            preferred_username: id,
            groups: account.groups === null ? undefined : (account.groups ?? []),
          };
        },
      };
    },
  });
  provider.on('server_error', (ctx, err) => console.error('idp server_error', err));
  return provider;
}

const server = http.createServer();
server.listen(Number(process.env.IDP_PORT || 0), '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  let provider = makeProvider(issuer, newKey());
  let callback = provider.callback();
  let holdMs = 0;
  let holdLeft = 0;
  let held = 0;
  server.on('request', (req, res) => {
    if (req.method === 'POST' && req.url.startsWith('/__test/hold')) {
      const params = new URL(req.url, issuer).searchParams;
      holdMs = Number(params.get('ms') || 0);
      holdLeft = params.has('count') ? Number(params.get('count')) : Infinity;
      res.writeHead(204).end();
      return;
    }
    if (req.method === 'GET' && req.url === '/__test/held') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end(String(held));
      return;
    }
    if (holdMs > 0 && holdLeft > 0 && req.method === 'POST' && req.url.startsWith('/token')) {
      holdLeft -= 1;
      held += 1;
      setTimeout(() => {
        held -= 1;
        callback(req, res);
      }, holdMs);
      return;
    }
    if (req.method === 'POST' && req.url.startsWith('/__test/advance')) {
      offsetMs += Number(new URL(req.url, issuer).searchParams.get('ms') || 0);
      res.writeHead(204).end();
      return;
    }
    if (req.method === 'POST' && req.url === '/__test/rotate') {
      provider = makeProvider(issuer, newKey());
      callback = provider.callback();
      res.writeHead(204).end();
      return;
    }
    callback(req, res);
  });
  console.log(`ready ${port}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
