// What a person sees besides the happy path: the live indicator's words (Live, Offline and
// back), a failed job's error, audio and image outputs, and paging to older jobs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, launchBrowser, waitHydrated, createDatabase, sql } from './support.mjs';

let database;
let server;
let browser;
let media;
let mediaDir;

before(async () => {
  // An MP3 of 2 s and a 320x180 PNG, served from a server of the test's own.
  mediaDir = mkdtempSync(join(tmpdir(), 'reeltime-e2e-media-'));
  const ffmpeg = (...args) => execFileSync('ffmpeg', ['-nostdin', '-y', '-loglevel', 'error', ...args]);
  ffmpeg('-f', 'lavfi', '-i', 'sine=frequency=440:duration=2', '-c:a', 'libmp3lame', join(mediaDir, 'tone.mp3'));
  ffmpeg('-f', 'lavfi', '-i', 'testsrc2=size=320x180', '-frames:v', '1', join(mediaDir, 'still.png'));
  const types = { mp3: 'audio/mpeg', png: 'image/png' };
  media = createServer((req, res) => {
    const name = req.url.slice(1);
    try {
      const body = readFileSync(join(mediaDir, name));
      res.writeHead(200, { 'content-type': types[name.split('.').pop()], 'content-length': body.length });
      res.end(body);
    } catch {
      res.writeHead(404).end();
    }
  });
  await new Promise((resolve) => media.listen(0, '127.0.0.1', resolve));
  database = createDatabase();
  server = await startServer({ databaseUrl: database.url });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  database?.drop();
  media?.close();
  if (mediaDir) rmSync(mediaDir, { recursive: true, force: true });
});

const mediaUrl = (name) => `http://127.0.0.1:${media.address().port}/${name}`;

async function open(path = '/') {
  const context = await browser.newContext();
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

  server = await startServer({ databaseUrl: database.url, port });
  await page.context().setOffline(false);
  await page.waitForSelector('.live-indicator[data-state="live"]', { timeout: 20_000 });
  assert.equal(await page.textContent('.live-indicator'), 'Live');
  await page.context().close();
});

test('a stream the server refuses shows Offline, and the page reopens it by itself', async () => {
  const context = await browser.newContext();
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
  sql(database.url, `update jobs set status = 'succeeded', output_url = '${mediaUrl('tone.mp3')}', output_duration_ms = 2000 where id = '${audio}'`);
  sql(database.url, `update jobs set status = 'succeeded', output_url = '${mediaUrl('still.png')}', output_width = 320, output_height = 180 where id = '${image}'`);

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
