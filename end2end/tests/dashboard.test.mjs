import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, createJob, waitHydrated, newContext, api } from './support.mjs';

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

test('the first HTML already holds the jobs', async () => {
  const job = await createJob(server, 'https://example.com/server-rendered.mp4');
  const html = await (await api(server, '/')).text();
  const table = html.indexOf('<table');
  const row = html.indexOf(`data-job-id="${job.id}"`);
  assert.ok(table > 0, 'the job table is rendered on the server');
  assert.ok(row > table, 'the job row is in the first HTML');

  // And a browser shows it before any script could have fetched it.
  const context = await newContext(browser, server, { javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(server.url);
  const status = await page.textContent(`tr[data-job-id="${job.id}"] .badge`);
  assert.equal(status, 'pending');
  await context.close();
});

test('with JavaScript, a submitted URL appears without a reload and the form clears', async () => {
  const context = await newContext(browser, server);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  await page.goto(server.url);
  await waitHydrated(page);

  let navigations = 0;
  page.on('framenavigated', (frame) => {
    if (frame === page.mainFrame()) navigations += 1;
  });
  await page.evaluate(() => { window.__stillTheSamePage = true; });

  const url = `https://example.com/live-${Date.now()}.mp4`;
  await page.fill('#input_url', url);
  await page.click('form.submit-form button[type="submit"]');
  const row = page.locator('tr.job', { hasText: url.replace('https://', '') });
  await row.waitFor({ timeout: 10_000 });

  assert.equal(await row.locator('.badge').textContent(), 'pending');
  assert.equal(await page.inputValue('#input_url'), '', 'the form is cleared');
  assert.equal(navigations, 0, 'no page load happened');
  assert.equal(await page.evaluate(() => window.__stillTheSamePage), true);
  assert.deepEqual(errors, []);
  await context.close();
});

test('an invalid URL shows an inline error and submits nothing', async () => {
  const context = await newContext(browser, server);
  const page = await context.newPage();
  await page.goto(server.url);
  await waitHydrated(page);
  const before = (await (await api(server, '/api/jobs?limit=100')).json()).jobs.length;

  await page.fill('#input_url', 'not a url');
  await page.click('form.submit-form button[type="submit"]');
  const error = page.locator('#input_url-error');
  await page.waitForFunction(() => document.querySelector('#input_url-error')?.textContent?.length > 0);
  assert.match(await error.textContent(), /isn't a URL/);
  assert.equal(await page.getAttribute('#input_url', 'aria-invalid'), 'true');

  await page.fill('#input_url', 'ftp://example.com/a.mp4');
  await page.click('form.submit-form button[type="submit"]');
  await page.waitForFunction(() => /http:\/\/ and https:\/\//.test(document.querySelector('#input_url-error').textContent));

  const after = (await (await api(server, '/api/jobs?limit=100')).json()).jobs.length;
  assert.equal(after, before, 'nothing was stored');
  await context.close();
});

test('with JavaScript disabled the form still submits', async () => {
  const context = await newContext(browser, server, { javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(server.url);
  const url = `https://example.com/no-js-${Date.now()}.mp4`;
  await page.fill('#input_url', url);
  await Promise.all([page.waitForNavigation(), page.click('form.submit-form button[type="submit"]')]);
  const row = page.locator('tr.job', { hasText: url.replace('https://', '') });
  assert.equal(await row.count(), 1);
  assert.equal(new URL(page.url()).pathname, '/');

  // A bad URL without JavaScript comes back with the message beside the field.
  await page.fill('#input_url', 'still not a url');
  await Promise.all([page.waitForNavigation(), page.click('form.submit-form button[type="submit"]')]);
  assert.match(await page.textContent('#input_url-error'), /isn't a URL/);
  await context.close();
});
