#!/usr/bin/env node
// browser-test.mjs: the browser test of heroes-auth. It drives Debian's
// headless Chromium with puppeteer-core (no browser download) through what a
// newcomer does with `-dev` in the first minutes:
//
//   node .ci/browser/browser-test.mjs [--only=GROUP,...]     (.ci/run runs it)
//
// It builds the service from the repository (HEROES_REPO, default the one
// holding this file) into a temporary folder and runs it with -dev on a free
// port, with DOCS_ASSETS_URL pointing at swagger-ui-dist from npm served on
// loopback (CI has no CDN) and CORS_ALLOWED_ORIGINS naming that loopback
// origin. Then, in groups (--only picks some; setup always runs):
//   flow  home page, Sign in, the dev sign-in form, Cancel, a read-only user
//         and the 403 it gets on DELETE, reloading the signed-in page,
//         sign-out, an admin who steps up (DELETE's claims challenge, "sign
//         in again with c1", the second step) and deletes, and a sign-in
//         started on 127.0.0.1;
//   docs  /docs: Swagger UI under its CSP with SRI-checked assets, the
//         fallback text when the assets cannot be reached, Authorize
//         (pop-up, dev sign-in, PKCE), Try it out GET 200 and DELETE 403;
//         then, as README says for -dev's step-up, a c1 token from
//         /auth/login?claims=… pasted under bearerAuth (oauth2 logged
//         out): Try it out POST with its pre-filled body 201, DELETE 200;
//   cors  a page on the listed origin reads the API, one on another origin
//         cannot; the listed one creates with Idempotency-Key twice and
//         reads Idempotent-Replayed and Location.
//
// One line per step ("ok", "FAIL" or "skip"), each step under a timeout,
// then a closing "N passed, N failed, N skipped" line; exit status 1 on any
// failure. The service, the static server and the browser are always
// stopped, on SIGINT/SIGTERM too.
//
// Settings (environment):
//   HEROES_REPO       repository to build                     (this file's ../..)
//   CHROMIUM          browser executable                      (/usr/bin/chromium)
//   BROWSER_DEPS      folder whose node_modules has puppeteer-core and
//                     swagger-ui-dist (.ci/run: a cache)       (this file's folder)
//   STEP_TIMEOUT_MS   timeout of one step                     (20000)
//   START_TIMEOUT_MS  build and start, until /readyz is 200   (180000: a cold build)
//   HEROES_PORT       port of the service                     (a free one)
//   ARTIFACTS         server log, screenshots of failures     (a temporary folder)

import { spawn, execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';

const here = path.dirname(fileURLToPath(import.meta.url));
const depsDir = process.env.BROWSER_DEPS || here;
const requireDep = createRequire(path.join(depsDir, 'package.json'));
const puppeteerModule = await import(pathToFileURL(requireDep.resolve('puppeteer-core')).href);
const puppeteer = puppeteerModule.default?.launch ? puppeteerModule.default : puppeteerModule;
const args = process.argv.slice(2);
const cfg = {
  repo: process.env.HEROES_REPO || path.resolve(here, '..', '..'),
  chromium: process.env.CHROMIUM || '/usr/bin/chromium',
  stepTimeout: Number(process.env.STEP_TIMEOUT_MS || 20000),
  startTimeout: Number(process.env.START_TIMEOUT_MS || 180000),
  port: Number(process.env.HEROES_PORT || 0),
  artifacts: process.env.ARTIFACTS || fs.mkdtempSync(path.join(os.tmpdir(), 'heroes-browser-test-')),
  only: (args.find((a) => a.startsWith('--only=')) || '').slice('--only='.length).split(',').filter(Boolean),
};

// Headless as root (CI), and nothing that talks to the outside world.
const chromiumArgs = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage',
];

// The dev provider's fixed identities (devidp.go).
const DEV_TENANT = 'decaf000-0000-4000-8000-000000000001';
const DEV_CLIENT = 'decaf000-0000-4000-8000-000000000002';
const SCOPES = ['Heroes.Read', 'Heroes.Create', 'Admin'];
/** HERO is a valid hero to create. */
const HERO = {
  name: 'Cors', race: 'Elf', class_: 'Wizard', level: 5,
  ability_scores: { strength: 8, dexterity: 14, constitution: 12, intelligence: 18, wisdom: 12, charisma: 10 },
  equipment: { weapon: 'Quarterstaff', items: [] }, hit_points: 27, armor_class: 12, speed: 30,
};
const apiScope = (s) => `api://${DEV_CLIENT}/${s}`;
const swaggerDir = path.dirname(requireDep.resolve('swagger-ui-dist/package.json'));

// ---------------------------------------------------------------- the runner

const steps = [];
/** step registers a named step; fn(ctx) throws to fail and may return a note. */
function step(name, fn, opts = {}) { steps.push({ name, fn, ...opts }); }

class StepTimeout extends Error {}
function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => { timer = setTimeout(() => reject(new StepTimeout(`timed out after ${ms} ms: ${what}`)), ms); }),
  ]);
}
function check(cond, msg) { if (!cond) throw new Error(msg); }
/** mark notes where a step is, so that a timeout says how far it got. */
function mark(what) { ctx.at = what; }
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ctx = { cleanups: [] }; // shared by the steps; cleanups run last-in first-out

async function runAll() {
  const t0 = Date.now();
  fs.mkdirSync(cfg.artifacts, { recursive: true });
  let passed = 0, failed = 0, skipped = 0, broken = false;
  for (const [i, s] of steps.entries()) {
    const label = `${String(i + 1).padStart(2, '0')} ${s.name}`;
    const wanted = s.group === 'setup' || cfg.only.length === 0 || cfg.only.includes(s.group);
    if (broken || interrupted || !wanted) {
      skipped++;
      console.log(`skip ${label}: ${broken ? 'an earlier step failed' : interrupted ? 'interrupted' : 'not in --only'}`);
      continue;
    }
    const start = Date.now();
    ctx.at = '';
    try {
      const note = await withTimeout(Promise.resolve().then(() => s.fn(ctx)), s.timeout ?? cfg.stepTimeout, s.name);
      passed++;
      console.log(`ok   ${label} (${Date.now() - start} ms)${note ? ': ' + note : ''}`);
    } catch (err) {
      failed++;
      if (interrupted) { console.log(`FAIL ${label}: interrupted`); continue; }
      console.log(`FAIL ${label} (${Date.now() - start} ms): ${err && err.message ? err.message : err}${ctx.at ? ` [last mark: ${ctx.at}]` : ''}`);
      await screenshot(`fail-${String(i + 1).padStart(2, '0')}`);
      broken = true; // later steps build on earlier ones
    }
  }
  await cleanup();
  if (failed === 0 && !process.env.ARTIFACTS) {
    fs.rmSync(cfg.artifacts, { recursive: true, force: true }); // nothing to look at
    console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  } else {
    console.log(`total ${((Date.now() - t0) / 1000).toFixed(1)} s; server log and screenshots in ${cfg.artifacts}`);
  }
  console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
  return failed === 0 && !interrupted;
}

async function screenshot(name) {
  for (const [which, page] of [['page', ctx.page], ['docs', ctx.docsPage]]) {
    if (!page || page.isClosed()) continue;
    try { await withTimeout(page.screenshot({ path: path.join(cfg.artifacts, `${name}-${which}.png`), fullPage: true }), 5000, 'screenshot'); } catch { /* best effort */ }
  }
}

let cleaning = null;
function cleanup() {
  cleaning ??= (async () => {
    while (ctx.cleanups.length) {
      const { what, fn } = ctx.cleanups.pop();
      try { await withTimeout(Promise.resolve().then(fn), 15000, what); } catch (err) { console.log(`cleanup ${what}: ${err.message}`); }
    }
  })();
  return cleaning;
}
function onCleanup(what, fn) { ctx.cleanups.push({ what, fn }); }

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, async () => {
    interrupted = true;
    console.log(`${sig}: cleaning up`);
    await cleanup();
    process.exit(130);
  });
}

// ---------------------------------------------------------------- helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function decodeJWT(token) {
  const [, payload] = token.split('.');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
}

/** api calls the service's API from Node with a bearer token. */
async function api(method, p, token) {
  const res = await fetch(`${ctx.base}${p}`, { method, headers: { authorization: `Bearer ${token}`, accept: 'application/json' } });
  const text = await res.text();
  let json; try { json = JSON.parse(text); } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

/** clickAndWait clicks selector on page and waits for the navigation it starts. */
async function clickAndWait(page, selector) {
  await Promise.all([page.waitForNavigation({ waitUntil: 'load' }), page.click(selector)]);
}

async function text(page, selector) { return page.$eval(selector, (e) => e.textContent.trim()); }

/**
 * fillDevSignIn fills the dev provider's sign-in form on page (the user name
 * and exactly the scope boxes in scopes; with stepUp, the second step's
 * box) and presses Sign in, or Cancel when action is 'cancel'. With wait,
 * it waits for the navigation that follows (a pop-up that closes itself has
 * none to wait for).
 */
async function fillDevSignIn(page, user, scopes, action = 'signin', wait = true, stepUp = false) {
  await page.waitForSelector('input[name=username]');
  if (action === 'signin') {
    await page.$eval('input[name=username]', (e) => { e.value = ''; });
    await page.type('input[name=username]', user);
    for (const s of SCOPES) {
      const box = await page.$(`input[name=grant][value="${s}"]`);
      check(box, `no ${s} checkbox on the sign-in form`);
      if ((await box.evaluate((e) => e.checked)) !== scopes.includes(s)) await box.click();
    }
    if (stepUp) await page.click('input[name=stepup]');
  }
  const button = `button[name=action][value=${action}]`;
  if (wait) await clickAndWait(page, button);
  else await page.click(button);
}

/** signedInPage reads the signed-in page: who, granted scopes, permissions, token, heroes, links. */
async function signedInPage(page) {
  check((await text(page, 'h1')) === 'Signed in', `expected the signed-in page, got "${await text(page, 'h1')}" at ${page.url()}`);
  return page.evaluate(() => {
    const ps = [...document.querySelectorAll('p')];
    const granted = ps.find((p) => p.textContent.startsWith('Granted scopes'));
    const allows = ps.find((p) => p.textContent.startsWith('What this token allows'));
    const details = [...document.querySelectorAll('details')];
    const tok = details.find((d) => d.querySelector('summary')?.textContent.trim() === 'Access token');
    const heroesP = ps.find((p) => p.textContent.startsWith('What GET /api/heroes/ answers'));
    const list = (p) => (p && p.nextElementSibling?.tagName === 'UL' ? [...p.nextElementSibling.querySelectorAll('li')].map((li) => li.textContent) : []);
    return {
      who: document.querySelector('p strong')?.textContent ?? '',
      scopes: granted ? [...granted.querySelectorAll('code')].map((c) => c.textContent) : [],
      permissions: list(allows),
      token: tok?.querySelector('pre')?.textContent.trim() ?? '',
      heroes: list(heroesP),
      links: [...document.querySelectorAll('a')].map((a) => a.getAttribute('href')),
    };
  });
}

/** serveStatic serves swagger-ui-dist's files as a CDN would (CORS for everyone, utf-8), and a blank page at /blank. */
function serveStatic() {
  return new Promise((resolve, reject) => {
    const types = { '.js': 'application/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.html': 'text/html; charset=utf-8' };
    const server = http.createServer((req, res) => {
      const u = new URL(req.url, 'http://x');
      if (u.pathname === '/blank') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end('<!doctype html><title>another origin</title><p>another origin</p>');
      }
      const name = path.basename(u.pathname);
      const file = path.join(swaggerDir, name);
      if (!/^[\w.-]+$/.test(name) || !fs.existsSync(file)) { res.writeHead(404); return res.end(); }
      ctx.assetsServed.push(name);
      res.writeHead(200, { 'content-type': types[path.extname(name)] || 'application/octet-stream', 'access-control-allow-origin': '*' });
      res.end(fs.readFileSync(file));
    });
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

// ---------------------------------------------------------------- setup

step('build the service and start it with -dev', async (c) => {
  c.assetsServed = [];
  const assets = await serveStatic();
  onCleanup('stop the static server', () => { assets.closeAllConnections(); assets.close(); });
  c.assetsOrigin = `http://127.0.0.1:${assets.address().port}`;
  c.otherOrigin = `http://localhost:${assets.address().port}`; // same server, an origin CORS does not list

  c.port = cfg.port || await freePort();
  c.base = `http://localhost:${c.port}`;
  c.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'heroes-auth-bin-'));
  onCleanup('remove the binary', () => fs.rmSync(c.dir, { recursive: true, force: true }));
  mark('go build');
  const bin = path.join(c.dir, 'heroes-auth');
  await promisify(execFile)('go', ['build', '-o', bin, '.'], { cwd: cfg.repo });
  c.logPath = path.join(cfg.artifacts, 'server.log');
  const log = fs.openSync(c.logPath, 'w');
  // Run in an empty folder, so that a developer's .env_oauth is not read.
  const env = {
    ...process.env, ADDR: `localhost:${c.port}`, HEROES_STORE: 'memory', HEROES_FILE: '', LOG_LEVEL: 'info', LOG_FORMAT: 'text',
    SESSION_KEY: '', DOCS_ASSETS_URL: c.assetsOrigin, CORS_ALLOWED_ORIGINS: c.assetsOrigin,
  };
  const child = spawn(bin, ['-dev'], { cwd: c.dir, env, stdio: ['ignore', log, log] });
  fs.closeSync(log);
  let exited = null;
  child.on('exit', (code, sig) => { exited = { code, sig }; });
  onCleanup('stop the service', async () => {
    if (exited) return;
    child.kill('SIGTERM');
    for (let i = 0; i < 100 && !exited; i++) await sleep(100); // it drains for up to SHUTDOWN_GRACE
    if (!exited) child.kill('SIGKILL');
  });
  mark('wait for /readyz');
  for (;;) {
    if (exited) throw new Error(`the service exited (${exited.code ?? exited.sig}); ${c.logPath}:\n${fs.readFileSync(c.logPath, 'utf8').slice(-1500)}`);
    try {
      if ((await fetch(`${c.base}/readyz`)).status === 200) break;
    } catch { /* not listening yet */ }
    await sleep(100);
  }
  // The start-up log names the URL to open (once the keys are loaded), and
  // does not bother a first try with SESSION_KEY and replicas.
  let logText = '';
  for (let i = 0; i < 50 && !logText.includes(`open ${c.base}/`); i++, await sleep(100)) logText = fs.readFileSync(c.logPath, 'utf8');
  check(logText.includes(`open ${c.base}/ in a browser`), `the start-up log does not say to open ${c.base}/:\n${logText.slice(0, 1500)}`);
  check(!logText.includes('SESSION_KEY'), `the -dev start-up log warns about SESSION_KEY:\n${logText.slice(0, 1500)}`);
  return `${c.base} ready; the log says "open ${c.base}/ in a browser"`;
}, { group: 'setup', get timeout() { return cfg.startTimeout; } });

step('launch headless Chromium (puppeteer-core)', async (c) => {
  c.profile = fs.mkdtempSync(path.join(os.tmpdir(), 'chromium-profile-'));
  onCleanup('remove the browser profile', () => fs.rmSync(c.profile, { recursive: true, force: true }));
  const launching = puppeteer.launch({
    executablePath: cfg.chromium,
    headless: true,
    userDataDir: c.profile,
    args: chromiumArgs,
    timeout: cfg.stepTimeout,
    protocolTimeout: cfg.stepTimeout,
    // Our own SIGINT/SIGTERM handler cleans up everything; puppeteer's would
    // kill the browser and exit at once, leaving the service running.
    handleSIGINT: false,
    handleSIGTERM: false,
    handleSIGHUP: false,
  });
  onCleanup('close the browser', async () => { const b = await launching.catch(() => null); if (b) await b.close(); });
  c.browser = await launching;
  c.page = await c.browser.newPage();
  c.page.setDefaultTimeout(cfg.stepTimeout);
  c.page.setDefaultNavigationTimeout(cfg.stepTimeout);
  return await c.browser.version();
}, { group: 'setup' });

// ---------------------------------------------------------------- flow

step('home page: Sign in and /docs, no API link that can only fail', async ({ page, base }) => {
  await page.goto(`${base}/`);
  check((await text(page, 'h1')) === 'Heroes API', 'no "Heroes API" heading');
  check(await page.$('a[href="/auth/login"]'), 'no Sign in link');
  check(await page.$('a[href="/docs"]'), 'no /docs link');
  const api = await page.$$eval('a', (as) => as.map((a) => a.getAttribute('href')).filter((h) => h.startsWith('/api/')));
  check(api.length === 0, `links to the API, which a browser gets 401 from: ${api}`);
}, { group: 'flow' });

step('Sign in opens the dev sign-in form', async ({ page }) => {
  await clickAndWait(page, 'a[href="/auth/login"]');
  check(page.url().includes(`/devidp/${DEV_TENANT}/oauth2/v2.0/authorize?`), `not on the dev authorize page: ${page.url()}`);
  check((await text(page, 'h1')) === 'Sign in', 'no "Sign in" heading');
  const boxes = await page.$$eval('input[name=grant]', (es) => es.map((e) => `${e.value}${e.checked ? '*' : ''}`));
  check(SCOPES.every((s) => boxes.some((b) => b.startsWith(s))), `scope boxes: ${boxes}`);
  return `boxes ${boxes.join(' ')} (* = ticked)`;
}, { group: 'flow' });

step('Cancel returns access_denied to the service', async ({ page, base }) => {
  await fillDevSignIn(page, '', [], 'cancel');
  check(page.url().startsWith(`${base}/auth/callback?`), `not back at the callback: ${page.url()}`);
  const body = await text(page, 'body');
  check(body.includes('access_denied'), `the page does not name access_denied: ${body.slice(0, 300)}`);
  return await text(page, 'h1');
}, { group: 'flow' });

step('sign in as "reader" with Heroes.Read: the page says what the token allows and links /docs', async (c) => {
  const { page, base } = c;
  await page.goto(`${base}/`);
  await clickAndWait(page, 'a[href="/auth/login"]');
  await fillDevSignIn(page, 'reader', ['Heroes.Read']);
  check(page.url().startsWith(`${base}/auth/callback?`), `not at the callback: ${page.url()}`);
  const s = await signedInPage(page);
  check(s.who === 'reader', `signed in as "${s.who}"`);
  check(s.scopes.length === 1 && s.scopes[0] === apiScope('Heroes.Read'), `granted ${s.scopes}`);
  check(s.permissions.length === 1 && s.permissions[0].startsWith('Heroes.Read: list and read heroes'), `permissions shown: ${JSON.stringify(s.permissions)}`);
  check(s.links.includes('/docs'), `no /docs link: ${s.links}`);
  check(s.heroes.length > 0, 'the page lists no heroes');
  c.readerToken = s.token;
  return `${s.heroes.length} heroes; "${s.permissions[0].slice(0, 40)}…"`;
}, { group: 'flow' });

step('reloading the signed-in page explains that the sign-in has finished', async ({ page }) => {
  const res = await page.reload({ waitUntil: 'load' });
  check(res.status() === 400, `reload answered ${res.status()}; want 400`);
  const body = await text(page, 'body');
  check(body.includes('this sign-in has finished') && body.includes('tokens are shown once'), `the page does not explain: ${body.slice(0, 300)}`);
  return `${res.status()}: "${body.split('\n').find((l) => l.includes('finished')).trim().slice(0, 90)}…"`;
}, { group: 'flow' });

step('the reader\'s token carries scp=Heroes.Read: GET is 200, DELETE is 403 insufficient_scope', async (c) => {
  const claims = decodeJWT(c.readerToken);
  check(claims.scp === 'Heroes.Read' && claims.aud === DEV_CLIENT && claims.name === 'reader', `claims ${JSON.stringify(claims)}`);
  const list = await api('GET', '/api/heroes/', c.readerToken);
  check(list.status === 200 && Array.isArray(list.json) && list.json.length > 0, `GET answered ${list.status}: ${list.text.slice(0, 200)}`);
  c.heroIds = list.json.map((h) => h.id);
  const del = await api('DELETE', `/api/heroes/${c.heroIds[0]}`, c.readerToken);
  const www = del.headers.get('www-authenticate') || '';
  check(del.status === 403 && www.includes('error="insufficient_scope"'), `DELETE answered ${del.status}, WWW-Authenticate: ${www}`);
  return www;
}, { group: 'flow' });

step('Sign out reaches the dev provider\'s signed-out page, then home', async ({ page, base }) => {
  await page.goto(`${base}/`);
  await clickAndWait(page, 'a[href="/auth/logout"]');
  check(page.url().includes(`/devidp/${DEV_TENANT}/oauth2/v2.0/logout`), `not on the dev logout page: ${page.url()}`);
  check((await text(page, 'h1')) === 'Signed out', 'no "Signed out" heading');
  await clickAndWait(page, `a[href="${base}/"]`);
  check((await text(page, 'h1')) === 'Heroes API', 'not back home');
  const left = (await page.cookies(`${base}/auth/callback`)).filter((k) => k.name.startsWith('heroes_login_'));
  check(left.length === 0, `login cookies left: ${left.map((k) => k.name)}`);
}, { group: 'flow' });

step('sign in as "admin" with every scope; DELETE is 401 with a claims challenge for authentication context c1', async (c) => {
  const { page } = c;
  await clickAndWait(page, 'a[href="/auth/login"]');
  await fillDevSignIn(page, 'admin', SCOPES);
  const s = await signedInPage(page);
  check(s.who === 'admin' && s.scopes.length === 3 && s.permissions.length === 3, `signed in as ${s.who} with ${s.scopes}; permissions ${s.permissions}`);
  check(s.links.some((l) => l.startsWith('/auth/login?claims=')), `the page offers no "sign in again with c1": ${s.links}`);
  c.deleteId = c.heroIds[c.heroIds.length - 1];
  const del = await api('DELETE', `/api/heroes/${c.deleteId}`, s.token);
  const www = del.headers.get('www-authenticate') || '';
  const claims = (www.match(/claims="([^"]*)"/) || [])[1] || '';
  check(del.status === 401 && www.includes('error="insufficient_claims"'), `DELETE answered ${del.status}, WWW-Authenticate: ${www}`);
  const asked = Buffer.from(claims, 'base64').toString('utf8');
  check(asked === '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}', `the challenge asks for ${asked}`);
  return asked;
}, { group: 'flow' });

step('"sign in again with c1": the dev provider asks for a second step; then DELETE is 200 and GET 404', async (c) => {
  const { page } = c;
  await clickAndWait(page, 'a[href^="/auth/login?claims="]');
  await page.waitForSelector('input[name=stepup]');
  check((await text(page, 'form')).includes('authentication context c1'), 'the sign-in form does not name authentication context c1');
  await fillDevSignIn(page, 'admin', SCOPES, 'signin', true, true);
  const s = await signedInPage(page);
  check(!s.links.some((l) => l.startsWith('/auth/login?claims=')), 'the page still offers the step-up');
  const acrs = decodeJWT(s.token).acrs;
  check(Array.isArray(acrs) && acrs.includes('c1'), `the new token's acrs: ${JSON.stringify(acrs)}`);
  const del = await api('DELETE', `/api/heroes/${c.deleteId}`, s.token);
  check(del.status === 200, `DELETE answered ${del.status}: ${del.text.slice(0, 200)}`);
  c.adminToken = s.token;
  const get = await api('GET', `/api/heroes/${c.deleteId}`, s.token);
  check(get.status === 404, `GET after DELETE answered ${get.status}`);
  return `acrs ${JSON.stringify(acrs)}`;
}, { group: 'flow' });

step('a sign-in started at 127.0.0.1 moves to localhost first and completes', async ({ page, base, port }) => {
  await page.goto(`http://127.0.0.1:${port}/auth/login`);
  check(page.url().startsWith(`${base}/devidp/`), `the login did not move to ${base}: ${page.url()}`);
  await fillDevSignIn(page, 'reader', ['Heroes.Read']);
  check(page.url().startsWith(`${base}/auth/callback?`), `not at the callback: ${page.url()}`);
  const s = await signedInPage(page);
  check(s.who === 'reader', `signed in as "${s.who}"`);
  return 'http://127.0.0.1 → localhost → signed in';
}, { group: 'flow' });

// ---------------------------------------------------------------- docs

step('/docs without its assets (CDN unreachable): a text points to /openapi.json, no script error', async (c) => {
  const page = await c.browser.newPage();
  onCleanup('close the offline /docs page', () => page.isClosed() || page.close().catch(() => {}));
  page.setDefaultTimeout(cfg.stepTimeout);
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.setRequestInterception(true);
  page.on('request', (r) => (r.url().startsWith(c.assetsOrigin) ? r.abort('internetdisconnected') : r.continue()));
  await page.goto(`${c.base}/docs`, { waitUntil: 'load' });
  const shown = await text(page, '#swagger-ui');
  check(shown.includes('could not be loaded') && shown.includes(`${c.base}/openapi.json`), `#swagger-ui says: ${shown}`);
  const href = await page.$eval('#swagger-ui a', (a) => a.href);
  check(href === `${c.base}/openapi.json`, `the link goes to ${href}`);
  check(errors.length === 0, `script errors: ${errors.join(' | ')}`);
  await page.close(); // the steps below use a page of their own, in front
  return shown.slice(0, 60) + '…';
}, { group: 'docs' });

step('/docs: Swagger UI from DOCS_ASSETS_URL (SRI) under its own CSP', async (c) => {
  const page = c.docsPage = await c.browser.newPage();
  page.setDefaultTimeout(cfg.stepTimeout);
  c.docsConsole = [];
  page.on('console', (m) => c.docsConsole.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => c.docsConsole.push(`pageerror: ${e.message}`));
  const res = await page.goto(`${c.base}/docs`, { waitUntil: 'load' });
  const csp = res.headers()['content-security-policy'] || '';
  check(csp.includes(`script-src ${c.assetsOrigin}/swagger-ui-bundle.js 'sha256-`) &&
    csp.includes(`style-src ${c.assetsOrigin}/swagger-ui.css;`) && !csp.includes('unsafe'), `CSP: ${csp}`);
  await page.waitForSelector('.swagger-ui .information-container .title');
  const shown = await text(page, '#swagger-ui');
  check(!shown.includes('could not be loaded'), 'the fallback text is still shown beside Swagger UI');
  const title = await text(page, '.swagger-ui .information-container .title');
  check(title.startsWith('Heroes API'), `title "${title}"`);
  check(await page.$('.swagger-ui button.authorize'), 'no Authorize button');
  const servers = await page.$$eval('.swagger-ui .servers option', (os) => os.map((o) => o.value));
  check(servers.length === 1 && servers[0] === c.base, `servers ${servers}`);
  const integrity = await page.$$eval('script[integrity], link[integrity]', (es) => es.length);
  check(integrity === 2, `${integrity} assets with integrity; want 2`);
  const problems = c.docsConsole.filter((m) => /Content Security Policy|integrity|pageerror/i.test(m));
  check(problems.length === 0, `console: ${problems.join(' | ')}`);
  return `assets served: ${[...new Set(c.assetsServed)].join(', ')}`;
}, { group: 'docs' });

step('/docs: Authorize → pop-up → dev sign-in as reader → authorized (PKCE, no secret)', async (c) => {
  const page = c.docsPage;
  await page.click('.swagger-ui .auth-wrapper button.authorize');
  await page.waitForSelector('.swagger-ui .modal-ux .auth-container');
  // One box per scheme (bearerAuth, oauth2); the oauth2 one has client_id.
  const found = await page.$$eval('.swagger-ui .modal-ux .auth-container', (boxes) => {
    const box = boxes.find((b) => b.querySelector('input[id^="client_id_"]'));
    if (box) box.setAttribute('data-test', 'oauth2');
    return !!box;
  });
  check(found, 'no oauth2 box in the Authorize dialog');
  const box = '.swagger-ui .modal-ux .auth-container[data-test=oauth2]';
  const clientId = await page.$eval(`${box} input[id^="client_id_"]`, (e) => e.value);
  check(clientId === DEV_CLIENT, `client_id field "${clientId}"`);
  const popupP = new Promise((resolve) => page.once('popup', resolve));
  mark('click Authorize in the oauth2 box');
  await page.click(`${box} button.authorize`);
  const popup = await withTimeout(popupP, cfg.stepTimeout, 'the sign-in pop-up');
  popup.setDefaultTimeout(cfg.stepTimeout);
  mark(`pop-up at ${popup.url()}`);
  const authorize = new URL(popup.url());
  check(authorize.pathname === `/devidp/${DEV_TENANT}/oauth2/v2.0/authorize`, `pop-up at ${popup.url()}`);
  check(authorize.searchParams.get('redirect_uri') === `${c.base}/docs/oauth2-redirect` &&
    authorize.searchParams.get('code_challenge_method') === 'S256', `authorize request ${authorize.search}`);
  const closed = new Promise((resolve) => popup.once('close', resolve));
  await fillDevSignIn(popup, 'reader', ['Heroes.Read'], 'signin', false);
  await withTimeout(closed, cfg.stepTimeout, 'the pop-up to close itself (/docs/oauth2-redirect)');
  mark('wait for Swagger UI to show Logout (authorized) or an error');
  try {
    await page.waitForFunction((sel) => {
      const b = document.querySelector(sel);
      return b && (b.querySelector('.errors') || [...b.querySelectorAll('button')].some((x) => x.textContent.trim() === 'Logout'));
    }, { timeout: cfg.stepTimeout / 2 }, box);
  } catch {
    const boxText = await page.$eval(box, (e) => e.innerText.replace(/\s+/g, ' ')).catch((e) => `(no box: ${e.message})`);
    throw new Error(`not authorized; the box says: ${boxText.slice(0, 400)}; console ${c.docsConsole.slice(-5).join(' | ')}`);
  }
  const authErrors = await page.$$eval(`${box} .errors`, (es) => es.map((e) => e.textContent.trim()));
  check(authErrors.length === 0, `Swagger UI auth errors: ${authErrors.join(' | ')}`);
  await page.click('.swagger-ui .modal-ux button.close-modal');
  return `redirect_uri ${authorize.searchParams.get('redirect_uri')}, scope "${authorize.searchParams.get('scope')}"`;
}, { group: 'docs' });

/** tryItOut runs operation opId in Swagger UI with the given path parameters and returns the status shown. */
async function tryItOut(page, opId, params = {}) {
  const op = `#operations-heroes-${opId}`;
  await page.waitForSelector(op);
  if (!(await page.$(`${op}.is-open`))) await page.click(`${op} .opblock-summary`);
  await page.waitForSelector(`${op} .try-out__btn`);
  // The button says Cancel once the operation is in Try it out mode.
  if (!(await page.$(`${op} .try-out__btn.cancel`))) await page.click(`${op} .try-out__btn`);
  for (const [name, value] of Object.entries(params)) {
    const input = `${op} tr[data-param-name="${name}"] input`;
    await page.click(input, { clickCount: 3 }); // typing replaces what an earlier run left
    await page.type(input, value);
  }
  // A run before this one may have left its answer on show: wait for the
  // API's answer to this run, then for Swagger UI to show its status.
  const answered = page.waitForResponse((r) => r.url().startsWith(`${ctx.base}/api/`) && r.request().method() !== 'OPTIONS');
  await page.click(`${op} .execute`);
  const want = String((await answered).status());
  const statusCell = `${op} .live-responses-table .response .response-col_status`;
  await page.waitForFunction((sel, w) => document.querySelector(sel)?.textContent.trim() === w, {}, statusCell, want);
  const status = await text(page, statusCell);
  const curl = await page.$eval(`${op} .curl-command`, (e) => e.textContent).catch(() => '');
  const body = await page.$eval(`${op} .live-responses-table .response .response-col_description pre`, (e) => e.textContent).catch(() => '');
  return { status, curl, body };
}

step('/docs: Try it out GET /api/heroes/ is 200 with the token from Authorize', async (c) => {
  const { status, curl } = await tryItOut(c.docsPage, 'listHeroes');
  check(status === '200', `Swagger UI shows status ${status}`);
  check(/Authorization: Bearer ey/.test(curl), 'the request carried no bearer token');
  check(curl.includes(`${c.base}/api/heroes/`), `the request went elsewhere: ${curl.slice(0, 200)}`);
  return 'Swagger UI shows 200';
}, { group: 'docs' });

step('/docs: Try it out DELETE /api/heroes/{id} is 403 for the reader; no CSP violation', async (c) => {
  // Any id will do: the permission is checked before the hero is looked up.
  const id = c.heroIds?.[0] ?? '00000000-0000-4000-8000-000000000000';
  const { status } = await tryItOut(c.docsPage, 'deleteHero', { id });
  check(status === '403', `Swagger UI shows status ${status}`);
  const csp = c.docsConsole.filter((m) => /Content Security Policy/i.test(m));
  check(csp.length === 0, `CSP violations on /docs: ${csp.join(' | ')}`);
  return 'Swagger UI shows 403';
}, { group: 'docs' });

step('/docs: a c1 token pasted under bearerAuth; Try it out POST with its pre-filled body is 201, DELETE 200', async (c) => {
  // README's way for -dev's step-up in /docs: a token from
  // /auth/login?claims=<the challenge's claims>, with the second step.
  const signIn = await c.browser.newPage();
  signIn.setDefaultTimeout(cfg.stepTimeout);
  const claims = '{"access_token":{"acrs":{"essential":true,"value":"c1"}}}';
  mark('sign in with the claims of the step-up challenge');
  await signIn.goto(`${c.base}/auth/login?claims=${encodeURIComponent(Buffer.from(claims).toString('base64'))}`);
  await signIn.waitForSelector('input[name=stepup]');
  await fillDevSignIn(signIn, 'docs-admin', SCOPES, 'signin', true, true);
  const { token } = await signedInPage(signIn);
  await signIn.close();
  check((decodeJWT(token).acrs || []).includes('c1'), `the token's acrs: ${JSON.stringify(decodeJWT(token).acrs)}`);

  const page = c.docsPage;
  mark('Authorize: Logout under oauth2, the token under bearerAuth');
  await page.click('.swagger-ui .auth-wrapper button.authorize');
  await page.waitForSelector('.swagger-ui .modal-ux .auth-container');
  await page.$$eval('.swagger-ui .modal-ux .auth-container', (boxes) => boxes.forEach((b) =>
    b.setAttribute('data-test', b.querySelector('input[id^="client_id_"]') || /oauth2/i.test(b.textContent) ? 'oauth2' : 'bearer')));
  const logout = await page.$$('.swagger-ui .modal-ux .auth-container[data-test=oauth2] button');
  for (const b of logout) if ((await b.evaluate((e) => e.textContent.trim())) === 'Logout') await b.click();
  const bearerBox = '.swagger-ui .modal-ux .auth-container[data-test=bearer]';
  await page.waitForSelector(`${bearerBox} input`);
  // Set at once (typing a 1.5 KB token key by key takes seconds), as
  // React sees a paste: through the value setter and an input event.
  await page.$eval(`${bearerBox} input`, (e, v) => {
    Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set.call(e, v);
    e.dispatchEvent(new Event('input', { bubbles: true }));
  }, token);
  await page.click(`${bearerBox} button.authorize`);
  await page.click('.swagger-ui .modal-ux button.close-modal');

  mark('Try it out POST /api/heroes/ with the body Swagger UI fills in');
  const created = await tryItOut(page, 'createHero');
  check(created.status === '201', `POST: Swagger UI shows status ${created.status}: ${created.body.slice(0, 300)}`);
  check(!created.curl.includes('"class"'), `the pre-filled body sends the class alias: ${created.curl.slice(0, 300)}`);
  const id = JSON.parse(created.body).id;
  mark(`Try it out DELETE /api/heroes/${id}`);
  const deleted = await tryItOut(page, 'deleteHero', { id });
  check(deleted.status === '200', `DELETE: Swagger UI shows status ${deleted.status}: ${deleted.body.slice(0, 300)}`);
  return `created and deleted ${id}`;
}, { group: 'docs' });

// ---------------------------------------------------------------- cors

step('CORS: a page on the listed origin reads the API; one on another origin cannot', async (c) => {
  const page = await c.browser.newPage();
  page.setDefaultTimeout(cfg.stepTimeout);
  onCleanup('close the CORS page', () => page.close().catch(() => {}));
  const token = c.readerToken;
  // fetch from a page on origin; returns the status, or the error for a blocked read.
  const fetchFrom = async (origin) => {
    await page.goto(`${origin}/blank`);
    return page.evaluate(async (base, token) => {
      try {
        const r = await fetch(`${base}/api/heroes/`, { headers: { Authorization: `Bearer ${token}` } });
        return `${r.status} ${(await r.json()).length} heroes`;
      } catch (e) { return `blocked: ${e.message}`; }
    }, c.base, token);
  };
  const listed = await fetchFrom(c.assetsOrigin);
  check(/^200 \d+ heroes$/.test(listed), `from the listed origin ${c.assetsOrigin}: ${listed}`);
  const other = await fetchFrom(c.otherOrigin);
  check(other.startsWith('blocked'), `from the unlisted origin ${c.otherOrigin}: ${other}`);
  // An idempotent create from the listed origin: the preflight allows
  // Idempotency-Key, and the page reads Idempotent-Replayed and Location.
  await page.goto(`${c.assetsOrigin}/blank`);
  const replay = await page.evaluate(async (base, token, hero) => {
    const post = async () => {
      const r = await fetch(`${base}/api/heroes/`, { method: 'POST', body: hero, headers: {
        Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', 'Idempotency-Key': '"browser-cors-1"' } });
      return `${r.status} ${r.headers.get('Idempotent-Replayed')} ${r.headers.get('Location')}`;
    };
    try { return [await post(), await post()]; } catch (e) { return [`blocked: ${e.message}`]; }
  }, c.base, c.adminToken, JSON.stringify(HERO));
  check(replay.length === 2 && /^201 null \/api\/heroes\/[\w-]+$/.test(replay[0]) &&
    replay[1] === replay[0].replace(' null ', ' true '), `idempotent creates from ${c.assetsOrigin}: ${replay.join('; ')}`);
  return `${c.assetsOrigin}: ${listed}, replayed create ${replay[1]}; ${c.otherOrigin}: ${other}`;
}, { group: 'cors' });

// ---------------------------------------------------------------- main

const ok = await runAll();
process.exit(ok ? 0 : 1);
