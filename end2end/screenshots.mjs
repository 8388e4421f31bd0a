// The README's pictures, from the release server: `node end2end/screenshots.mjs` (after
// `cargo xtask build`). A fresh database with a few jobs in every state, the dashboard filtered
// by status, and a job's page; then, with the built-in processor, the drop zone and the Stats
// page's workers.
import { startServer, launchBrowser, waitHydrated, createDatabase, newContext, api, createJob, sql } from './tests/support.mjs';
import { resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const docs = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'docs');
const database = createDatabase();
const server = await startServer({ databaseUrl: database.url });
const browser = await launchBrowser();
try {
  const states = [
    ['succeeded', null, 'https://media.example.com/launch/keynote.mp4'],
    ['failed', 'the input URL was not found (HTTP 404)', 'https://cdn.example.com/old/teaser.mov'],
    ['processing', null, 'https://media.example.com/interviews/ana.mp4'],
    ['failed', "the input URL's host could not be found: check the address", 'https://nope.example.invalid/clip.mp4'],
    ['queued', null, 'https://uploads.example.com/2026/12/product-demo.mp4'],
    ['cancelled', null, 'https://media.example.com/drafts/cut-3.mp4'],
  ];
  const ids = [];
  for (const [status, error, url] of states) {
    const job = await createJob(server, url);
    ids.push(job.id);
    const progress = status === 'processing' ? 40 : 'null';
    sql(database.url, `update jobs set status = '${status}', progress = ${progress}, error = ${error ? `'${error.replaceAll("'", "''")}'` : 'null'} where id = '${job.id}'`);
  }
  await api(server, `/api/jobs/${ids[1]}/retry`, { method: 'POST' });

  const page = await (await newContext(browser, server, { viewport: { width: 1200, height: 760 } })).newPage();
  await page.goto(`${server.url}/?status=failed`);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]');
  await page.screenshot({ path: `${docs}/dashboard-filtered.png` });

  await page.goto(`${server.url}/`);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]');
  await page.screenshot({ path: `${docs}/dashboard.png` });

  await page.goto(`${server.url}/jobs/${ids[1]}`);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]');
  await page.screenshot({ path: `${docs}/job-page.png`, fullPage: true });

  const phone = await (await newContext(browser, server, { viewport: { width: 390, height: 844 }, isMobile: true })).newPage();
  await phone.goto(`${server.url}/`);
  await waitHydrated(phone);
  await phone.screenshot({ path: `${docs}/dashboard-phone.png` });
  console.log(`wrote ${docs}/dashboard.png, dashboard-filtered.png, job-page.png, dashboard-phone.png`);

  // With the built-in processor (the default): the drop zone, and the Stats page's workers.
  const processing = createDatabase();
  const local = await startServer({
    databaseUrl: processing.url,
    env: { REELTIME_PROCESSOR: 'on', REELTIME_SAMPLE_CLIP: 'off' },
  });
  try {
    const view = await (await newContext(browser, local, { viewport: { width: 1200, height: 420 } })).newPage();
    await view.goto(`${local.url}/`);
    await waitHydrated(view);
    await view.waitForSelector('.drop-zone:not([hidden])');
    await view.screenshot({ path: `${docs}/dashboard-upload.png` });
    await view.setViewportSize({ width: 1200, height: 900 });
    await view.goto(`${local.url}/stats`);
    await waitHydrated(view);
    await view.waitForSelector('.workers table');
    await view.screenshot({ path: `${docs}/stats-workers.png`, fullPage: true });
    console.log(`wrote ${docs}/dashboard-upload.png, stats-workers.png`);
  } finally {
    await local.stop();
    processing.drop();
  }
} finally {
  await browser.close();
  await server.stop();
  database.drop();
}
