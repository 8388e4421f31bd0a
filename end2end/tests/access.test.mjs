// Signing in, out, and what a viewer may not do, in a real browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, waitHydrated, newContext, ADMIN } from './support.mjs';

let server;
let browser;

before(async () => {
  server = await startServer();
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

async function signIn(page, email, password) {
  await page.fill('#email', email);
  await page.fill('#password', password);
  await Promise.all([page.waitForNavigation(), page.click('form[action="/login"] button[type="submit"]')]);
}

test('sign in, submit, sign out: the dashboard then asks to sign in again', async () => {
  const context = await newContext(browser, server, { signedIn: false });
  const page = await context.newPage();
  await page.goto(server.url);
  assert.equal(new URL(page.url()).pathname, '/login', 'anonymous people are sent to sign in');

  await signIn(page, ADMIN.email, 'not the password');
  assert.match(await page.textContent('.flash-error'), /do not match/);
  await signIn(page, ADMIN.email, ADMIN.password);
  assert.equal(new URL(page.url()).pathname, '/');
  await waitHydrated(page);
  assert.match(await page.textContent('.signed-in-as'), /admin@example\.com/);

  const url = `https://example.com/signed-in-${Date.now()}.mp4`;
  await page.fill('#input_url', url);
  await page.click('form.submit-form button[type="submit"]');
  await page.locator('tr.job', { hasText: url.replace('https://', '') }).waitFor({ timeout: 10_000 });

  await Promise.all([page.waitForNavigation(), page.click('button:has-text("Sign out")')]);
  assert.equal(new URL(page.url()).pathname, '/login');
  await page.goto(server.url);
  assert.equal(new URL(page.url()).pathname, '/login', 'signed out: asked to sign in again');
  await context.close();
});

test('a viewer sees no actions, and a forged action is refused', async () => {
  // The admin adds a viewer on the accounts page.
  const admin = await newContext(browser, server);
  const adminPage = await admin.newPage();
  await adminPage.goto(`${server.url}/admin/users`);
  const viewer = { email: `viewer-${Date.now()}@example.com`, password: 'a viewer password' };
  await adminPage.fill('#new-email', viewer.email);
  await adminPage.selectOption('#new-role', 'viewer');
  await adminPage.fill('#new-password', viewer.password);
  await Promise.all([adminPage.waitForNavigation(), adminPage.click('button:has-text("Add the account")')]);
  assert.match(await adminPage.textContent('.flash-ok'), /can sign in now, as viewer/);
  await admin.close();

  const context = await newContext(browser, server, { signedIn: false });
  const page = await context.newPage();
  await page.goto(`${server.url}/login`);
  await signIn(page, viewer.email, viewer.password);
  await waitHydrated(page);
  assert.equal(await page.locator('form.submit-form').count(), 0, 'no submit form');
  assert.equal(await page.locator('a[href="/admin/users"]').count(), 0, 'no admin link');
  assert.equal(await page.getByRole('button', { name: 'Try a sample clip' }).count(), 0);

  // The same request the form would make, forged from the page: refused.
  const status = await page.evaluate(async () => {
    const response = await fetch('/api/jobs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input_url: 'https://example.com/forged.mp4' }),
    });
    return response.status;
  });
  assert.equal(status, 403);
  await context.close();
});
