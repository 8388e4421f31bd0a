import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, launchBrowser, createJob, waitHydrated, createDatabase, sql, newContext, api } from './support.mjs';

let database;
let server;
let browser;

before(async () => {
  database = createDatabase();
  server = await startServer({ databaseUrl: database.url });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  database?.drop();
});

async function openDashboard() {
  const page = await (await newContext(browser, server)).newPage();
  await page.goto(server.url);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 10_000 });
  return page;
}

const statusOf = (page, id) => page.locator(`tr[data-job-id="${id}"] .badge`);

async function expectStatus(page, id, status, timeout = 5_000) {
  await page.waitForFunction(
    ([id, status]) => document.querySelector(`tr[data-job-id="${id}"] .badge`)?.textContent === status,
    [id, status],
    { timeout },
  );
  assert.equal(await statusOf(page, id).textContent(), status);
}

test('a row updated with SQL shows its new status in two pages without a reload', async () => {
  const [a, b] = [await openDashboard(), await openDashboard()];
  const job = await createJob(server, `https://example.com/two-tabs-${Date.now()}.mp4`);
  await expectStatus(a, job.id, 'pending');
  await expectStatus(b, job.id, 'pending');

  const started = Date.now();
  sql(database.url, `update jobs set status = 'processing' where id = '${job.id}'`);
  await Promise.all([expectStatus(a, job.id, 'processing', 1_000), expectStatus(b, job.id, 'processing', 1_000)]);
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 1_000, `both pages updated in ${elapsed} ms (the promise is within a second)`);

  // A job submitted in one tab appears in the other.
  const url = `https://example.com/from-tab-a-${Date.now()}.mp4`;
  await a.fill('#input_url', url);
  await a.click('form.submit-form button[type="submit"]');
  await b.locator('tr.job', { hasText: url.replace('https://', '') }).waitFor({ timeout: 5_000 });

  // A deleted row disappears.
  sql(database.url, `delete from jobs where id = '${job.id}'`);
  await b.waitForFunction((id) => !document.querySelector(`tr[data-job-id="${id}"]`), job.id, { timeout: 5_000 });
  await a.context().close();
  await b.context().close();
});

test('changes made while the server is down arrive when it returns', async () => {
  const [a, b] = [await openDashboard(), await openDashboard()];
  const job = await createJob(server, `https://example.com/outage-${Date.now()}.mp4`);
  await expectStatus(a, job.id, 'pending');
  await expectStatus(b, job.id, 'pending');

  const port = server.port;
  await server.stop({ keepData: true });
  for (const page of [a, b]) {
    await page.waitForSelector('.live-indicator[data-state="reconnecting"]', { timeout: 10_000 });
    assert.equal(await page.textContent('.live-indicator'), 'Reconnecting…');
  }

  // Written while no server runs: only the database knows.
  sql(database.url, `update jobs set status = 'succeeded', output_url = 'https://cdn.example.com/out.mp4' where id = '${job.id}'`);
  const inserted = sql(database.url, `insert into jobs (input_url) values ('https://example.com/while-down.mp4') returning id`);

  server = await startServer({ databaseUrl: database.url, port, cookie: server.cookie });
  for (const page of [a, b]) {
    await expectStatus(page, job.id, 'succeeded', 15_000);
    await page.waitForSelector(`tr[data-job-id="${inserted}"]`, { timeout: 5_000 });
    assert.equal(await page.getAttribute(`tr[data-job-id="${job.id}"] .output-link`, 'href'), 'https://cdn.example.com/out.mp4');
    await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 5_000 });
  }
  await a.context().close();
  await b.context().close();
});
