// What a person sees besides the happy path: the live indicator's words (Live, Offline and
// back), a failed job's error, audio and image outputs, and paging to older jobs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, waitHydrated, createDatabase, sql, newContext } from './support.mjs';

const PROCESSOR = { REELTIME_PROCESSOR: 'on' };

let database;
let server;
let browser;
let mediaDir;

before(async () => {
  // An MP3 of 2 s and a 320x180 PNG, made here and served as outputs (see `output`).
  mediaDir = mkdtempSync(join(tmpdir(), 'reeltime-e2e-media-'));
  const ffmpeg = (...args) => execFileSync('ffmpeg', ['-nostdin', '-y', '-loglevel', 'error', ...args]);
  ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', '-c:a', 'libmp3lame', join(mediaDir, 'tone.mp3'));
  ffmpeg('-f', 'lavfi', '-i', 'testsrc2=size=320x180', '-frames:v', '1', join(mediaDir, 'still.png'));
  database = createDatabase();
  // The built-in processor on, for its files route: the page's CSP lets media come from the
  // server itself or https, so the outputs below are served as the processor serves its own.
  server = await startServer({ databaseUrl: database.url, env: PROCESSOR });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  database?.drop();
  if (mediaDir) rmSync(mediaDir, { recursive: true, force: true });
});

/** An output as the built-in processor keeps it, served by this server at its files route. */
function output(name, file) {
  copyFileSync(join(mediaDir, file), join(server.dataDir, 'processor', 'outputs', name));
  return `${server.url}/ittybit-local/files/${name}`;
}

async function open(path = '/') {
  const context = await newContext(browser, server);
  const page = await context.newPage();
  await page.goto(`${server.url}${path}`);
  await waitHydrated(page);
  return page;
}

test('the indicator says Live, Offline without a network, and Live again when it returns', async () => {
  const page = await open();
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 10_000 });
  assert.equal(await page.textContent('.live-indicator'), 'Live');

  // The network goes (the browser knows it is offline) and the stream with it.
  await page.context().setOffline(true);
  const port = server.port;
  await server.stop({ keepData: true });
  await page.waitForSelector('.live-indicator[data-state="offline"]', { timeout: 15_000 });
  assert.equal(await page.textContent('.live-indicator'), 'Offline');

  server = await startServer({ databaseUrl: database.url, port, cookie: server.cookie, env: PROCESSOR });
  await page.context().setOffline(false);
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 20_000 });
  assert.equal(await page.textContent('.live-indicator'), 'Live');
  await page.context().close();
});

test('a stream the server refuses shows Offline, and the page reopens it by itself', async () => {
  const context = await newContext(browser, server);
  // A proxy in front answering 503: the browser will not retry such a stream on its own.
  await context.route('**/api/events**', (route) => route.fulfill({ status: 503, body: 'unavailable' }));
  const page = await context.newPage();
  await page.goto(server.url);
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="offline"]', { timeout: 15_000 });
  assert.equal(await page.textContent('.live-indicator'), 'Offline');

  await context.unroute('**/api/events**');
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 20_000 });
  assert.equal(await page.textContent('.live-indicator'), 'Live');
  // And it follows changes again.
  const id = sql(database.url, `insert into jobs (input_url) values ('https://example.com/after-reopen.mp4') returning id`);
  await page.waitForSelector(`tr[data-job-id="${id}"]`, { timeout: 10_000 });
  await context.close();
});

test("a failed job shows its error, and audio and image outputs get their players", async () => {
  const page = await open();
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 10_000 });
  const failed = sql(database.url, `insert into jobs (input_url) values ('https://example.com/broken.mp4') returning id`);
  const audio = sql(database.url, `insert into jobs (input_url, kind, options) values ('https://example.com/song.wav', 'audio', '{"format": "mp3"}') returning id`);
  const image = sql(database.url, `insert into jobs (input_url, kind, options) values ('https://example.com/clip.mp4', 'image', '{"format": "png"}') returning id`);
  sql(database.url, `update jobs set status = 'failed', error = 'ffmpeg could not process the input: Invalid data found when processing input' where id = '${failed}'`);
  sql(database.url, `update jobs set status = 'succeeded', output_url = '${output('job_tone.mp3', 'tone.mp3')}', output_duration_ms = 2000 where id = '${audio}'`);
  sql(database.url, `update jobs set status = 'succeeded', output_url = '${output('job_still.png', 'still.png')}', output_width = 320, output_height = 180 where id = '${image}'`);

  const error = page.locator(`tr[data-job-id="${failed}"] .job-error`);
  await error.waitFor({ state: 'visible', timeout: 10_000 });
  assert.equal(await error.textContent(), 'ffmpeg could not process the input: Invalid data found when processing input');
  assert.equal(await page.textContent(`tr[data-job-id="${failed}"] .badge`), 'failed');

  const player = page.locator(`tr[data-job-id="${audio}"] audio.preview`);
  await player.waitFor({ timeout: 10_000 });
  await page.waitForFunction((id) => document.querySelector(`tr[data-job-id="${id}"] audio.preview`)?.readyState >= 1, audio, { timeout: 15_000 });
  assert.ok(Math.abs((await player.evaluate((a) => a.duration)) - 2) < 0.2);
  assert.equal(await page.textContent(`tr[data-job-id="${audio}"] .output-facts`), '0:02');

  const still = page.locator(`tr[data-job-id="${image}"] img.preview`);
  await still.waitFor({ timeout: 10_000 });
  await page.waitForFunction((id) => document.querySelector(`tr[data-job-id="${id}"] img.preview`)?.complete, image, { timeout: 15_000 });
  assert.deepEqual(await still.evaluate((i) => [i.naturalWidth, i.naturalHeight]), [320, 180]);
  assert.equal(await page.textContent(`tr[data-job-id="${image}"] .output-facts`), '320×180');
  await page.context().close();
});

test('"Older jobs" pages back; an older page gains no new rows but keeps its rows current', async () => {
  // 55 jobs a minute apart, oldest first; the first page holds the newest 50.
  sql(database.url, `delete from jobs`);
  sql(database.url, `insert into jobs (input_url, created_at)
    select 'https://example.com/page-' || n || '.mp4', now() - make_interval(mins => 100 - n)
    from generate_series(1, 55) n`);
  const page = await open();
  assert.equal(await page.locator('tr.job').count(), 50);
  await page.click('a.older');
  await page.waitForURL(/\?before=/);
  // The router may move there in the page: wait for the older page's rows, not the URL.
  await page.waitForFunction(() => document.querySelectorAll('tr.job').length === 5, null, { timeout: 10_000 });
  await waitHydrated(page);
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 10_000 });
  const urls = await page.locator('tr.job .job-input a').evaluateAll((links) => links.map((a) => a.textContent));
  assert.deepEqual(urls, [5, 4, 3, 2, 1].map((n) => `https://example.com/page-${n}.mp4`));
  assert.equal(await page.locator('a.newest').textContent(), '← Newest jobs');
  assert.equal(await page.locator('a.older').count(), 0, 'no page beyond the oldest');

  // A new job belongs on the first page; a change to a row shown here shows.
  const oldest = sql(database.url, `select id from jobs where input_url = 'https://example.com/page-1.mp4'`);
  sql(database.url, `insert into jobs (input_url) values ('https://example.com/brand-new.mp4')`);
  sql(database.url, `update jobs set status = 'processing' where id = '${oldest}'`);
  await page.waitForFunction((id) => document.querySelector(`tr[data-job-id="${id}"] .badge`)?.textContent === 'processing', oldest, { timeout: 10_000 });
  assert.equal(await page.locator('tr.job').count(), 5);
  assert.equal(await page.locator('tr.job', { hasText: 'brand-new' }).count(), 0);
  await page.context().close();
});
