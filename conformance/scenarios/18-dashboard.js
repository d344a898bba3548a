// The emulator's dashboard in a real browser (Debian's chromium driven by
// playwright-core) beside a device on the official SDK: what a developer
// sees and does there reaches the device, and what the device does shows
// on the page. Azure has no such page: without DASHBOARD_URL the
// scenarios are skipped. With SCREENSHOTS set to a directory, the main
// pages are saved there as they are shown.
'use strict';
const fs = require('fs');
const path = require('path');
const { Message } = require('azure-iot-device');
const { createDevice, openDevice, registry, assert } = require('../lib');

let chromium = null;
try {
  ({ chromium } = require('playwright-core'));
} catch {
  /* reported by withPage */
}

const shots = process.env.SCREENSHOTS;

// withPage runs fn with a page of a fresh browser at the size of a
// laptop's screen.
async function withPage(fn, viewport = { width: 1280, height: 800 }) {
  const url = process.env.DASHBOARD_URL;
  if (!url) return 'DASHBOARD_URL is not set: the dashboard is the emulator\'s own';
  if (!chromium) return 'playwright-core is not installed';
  const exe = process.env.CHROMIUM;
  if (!exe) return 'no chromium to drive (.ci/chromium installs it as root)';
  const args = process.getuid && process.getuid() === 0 ? ['--no-sandbox'] : [];
  const browser = await chromium.launch({ executablePath: exe, args });
  try {
    const page = await browser.newPage({ viewport, colorScheme: 'light' });
    page.on('pageerror', (err) => console.log(`  page error: ${err.message}`));
    return await fn(page, url);
  } finally {
    await browser.close();
  }
}

async function shoot(page, name) {
  if (!shots) return;
  fs.mkdirSync(shots, { recursive: true });
  await page.screenshot({ path: path.join(shots, `${name}.png`), fullPage: true });
}

// A device that reports back every desired property it is sent, answers
// "reboot" with the delay it was asked for, and keeps the C2D messages
// it receives.
async function reportingDevice(prefix) {
  const { id, cs } = await createDevice(prefix);
  const client = await openDevice(cs);
  const twin = await client.getTwin();
  const received = [];
  twin.on('properties.desired', (delta) => {
    const patch = {};
    for (const [k, v] of Object.entries(delta)) if (!k.startsWith('$')) patch[k] = v;
    if (Object.keys(patch).length) twin.properties.reported.update(patch, () => {});
  });
  client.onDeviceMethod('reboot', (req, res) => res.send(200, { rebooted: true, delay: req.payload && req.payload.delay }, () => {}));
  client.on('message', (m) => {
    received.push(m.data.toString());
    client.complete(m, () => {});
  });
  return { id, client, received };
}

const text = (page, sel) => page.locator(sel).innerText();

module.exports = {
  async deviceListShowsConnected() {
    const dev = await reportingDevice('dash-list');
    const idle = await createDevice('dash-idle');
    try {
      return await withPage(async (page, url) => {
        await page.goto(url);
        const row = page.locator(`tr[data-device="${dev.id}"]`);
        await row.locator('.badge.on').waitFor({ timeout: 10000 });
        assert((await row.innerText()).includes('Connected'), 'the row says Connected');
        const idleRow = page.locator(`tr[data-device="${idle.id}"]`);
        await idleRow.locator('.badge.off').waitFor();
        await page.getByLabel('Filter devices by id').fill(dev.id);
        await page.waitForFunction((id) => [...document.querySelectorAll('#devices tbody tr')].every((r) => r.dataset.device === id), dev.id);
        await page.getByLabel('Filter devices by id').fill('');
        await page.getByLabel('Connection state').selectOption('Connected');
        await idleRow.waitFor({ state: 'detached' });
        await row.waitFor();
        await page.getByLabel('Connection state').selectOption('');
        await shoot(page, 'devices');
        await dev.client.close();
        await row.locator('.badge.off').waitFor({ timeout: 10000 });
      });
    } finally {
      await dev.client.close();
    }
  },

  async desiredEditReachesDevice() {
    const dev = await reportingDevice('dash-twin');
    try {
      await registry().addModule({ deviceId: dev.id, moduleId: 'filter' });
      return await withPage(async (page, url) => {
        await page.goto(`${url}#/devices/${dev.id}`);
        await page.locator('#modules li[data-module="filter"] .badge.off').waitFor({ timeout: 5000 });
        await page.waitForFunction(() => document.getElementById('etag').textContent !== '');
        await page.getByLabel('Desired properties').fill('{"interval": 42, "mode": "eco"}');
        await page.getByRole('button', { name: 'Save twin' }).click();
        await page.waitForFunction(() => document.getElementById('twin-status').textContent.startsWith('Saved'));
        // The device reports both back; the page shows the reported values.
        await page.locator('tr[data-path="interval"] td', { hasText: '42' }).waitFor({ timeout: 10000 });
        await page.locator('tr[data-path="mode"] td', { hasText: 'eco' }).waitFor({ timeout: 10000 });
        const updated = await page.locator('tr[data-path="interval"] td').getAttribute('title');
        assert(updated && updated.includes('$lastUpdated'), `$metadata on hover: ${updated}`);
        const cs = await text(page, '#connection-string');
        assert(cs.includes(`DeviceId=${dev.id};SharedAccessKey=`), `connection string ${cs}`);
      });
    } finally {
      await dev.client.close();
    }
  },

  async methodCallShowsAnswer() {
    const dev = await reportingDevice('dash-method');
    try {
      return await withPage(async (page, url) => {
        await page.goto(`${url}#/devices/${dev.id}`);
        await page.getByLabel('Method name').fill('reboot');
        await page.getByLabel('Payload (JSON)').fill('{"delay": 3}');
        await page.getByRole('button', { name: 'Invoke method' }).click();
        await page.waitForFunction(() => document.getElementById('method-result').textContent.startsWith('status 200'));
        const out = await text(page, '#method-result');
        assert(out.includes('"delay": 3') && out.includes('"rebooted": true'), `method result ${out}`);
        // A method the device has no handler for: the SDK never answers,
        // and the page shows the hub's timeout.
        await page.getByLabel('Method name').fill('selfDestruct');
        await page.getByLabel('Response timeout (s)').fill('5');
        await page.getByRole('button', { name: 'Invoke method' }).click();
        await page.waitForFunction(() => document.getElementById('method-result').textContent.startsWith('504 GatewayTimeout'), null, { timeout: 15000 });

        await page.getByLabel('Message body').fill('hello from the dashboard');
        await page.getByLabel('Message properties').fill('kind=greeting');
        await page.getByRole('button', { name: 'Send message' }).click();
        await page.waitForFunction(() => document.getElementById('c2d-status').textContent.startsWith('Queued'));
        for (let i = 0; i < 100 && !dev.received.length; i++) await new Promise((r) => setTimeout(r, 100));
        assert(dev.received[0] === 'hello from the dashboard', `the device received ${JSON.stringify(dev.received)}`);

        await page.goto(`${url}#/events`);
        await page.locator('#events li').filter({ hasText: dev.id }).filter({ hasText: 'reboot: answered 200' }).waitFor({ timeout: 5000 });
        await shoot(page, 'events');
      });
    } finally {
      await dev.client.close();
    }
  },

  async liveTelemetryWithinTwoSeconds() {
    const dev = await reportingDevice('dash-telemetry');
    try {
      return await withPage(async (page, url) => {
        await page.goto(`${url}#/devices/${dev.id}`);
        await page.waitForSelector('#telemetry-chart figure');
        for (let i = 0; i < 8; i++) {
          const m = new Message(JSON.stringify({ temperature: 20 + (i % 4), humidity: 40 + i }));
          m.properties.add('unit', 'celsius');
          await dev.client.sendEvent(m);
        }
        const marker = `marker-${Date.now()}`;
        await dev.client.sendEvent(new Message(JSON.stringify({ temperature: 25, note: marker })));
        // Within two seconds of the send's acknowledgement.
        await page.locator('#telemetry tr', { hasText: marker }).waitFor({ timeout: 2000 });
        const chart = await page.locator('#telemetry-chart svg').getAttribute('aria-label');
        assert(chart.includes('temperature') && chart.includes('humidity'), `chart of ${chart}`);
        assert((await text(page, '#telemetry')).includes('unit=celsius'), 'properties shown');
        await shoot(page, 'device');
        await page.emulateMedia({ colorScheme: 'dark' });
        await page.getByRole('button', { name: 'Dark theme' }).click();
        await shoot(page, 'device-dark');
      });
    } finally {
      await dev.client.close();
    }
  },

  async staleETagShows412() {
    const dev = await reportingDevice('dash-etag');
    try {
      return await withPage(async (page, url) => {
        await page.goto(`${url}#/devices/${dev.id}`);
        await page.waitForFunction(() => document.getElementById('etag').textContent !== '');
        // Someone else changes the twin after the page loaded it.
        const reg = registry();
        const tw = (await reg.getTwin(dev.id)).responseBody;
        await reg.updateTwin(dev.id, { properties: { desired: { owner: 'someone else' } } }, tw.etag);
        await page.getByLabel('Desired properties').fill('{"owner": "me"}');
        await page.getByRole('button', { name: 'Save twin' }).click();
        const alert = page.getByRole('alert');
        await alert.waitFor({ timeout: 5000 });
        const msg = await alert.innerText();
        assert(msg.includes('412') && msg.includes('PreconditionFailed'), `the page said ${msg}`);
        const after = (await reg.getTwin(dev.id)).responseBody;
        assert(after.properties.desired.owner === 'someone else', 'the stale edit changed nothing');
      });
    } finally {
      await dev.client.close();
    }
  },

  async queryJobsAndPhone() {
    const dev = await reportingDevice('dash-query');
    try {
      return await withPage(async (page, url) => {
        await page.goto(`${url}#/query`);
        await page.getByLabel('Query').fill(`SELECT deviceId, connectionState FROM devices WHERE deviceId = '${dev.id}'`);
        await page.getByRole('button', { name: 'Run query' }).click();
        await page.locator('#results td', { hasText: dev.id }).waitFor({ timeout: 5000 });
        assert((await text(page, '#query-status')) === '1 result.', 'one result');
        await shoot(page, 'query');
        await page.getByLabel('Query').fill('SELECT * FROM nowhere');
        await page.getByRole('button', { name: 'Run query' }).click();
        await page.getByRole('alert').waitFor({ timeout: 5000 });
        assert((await page.getByRole('alert').innerText()).startsWith('400'), 'a bad query shows the 400');
        await page.goto(`${url}#/jobs`);
        await page.locator('#jobs tr').first().waitFor();
        await page.goto(`${url}#/configurations`);
        await page.locator('#configurations tr').first().waitFor();
        await page.setViewportSize({ width: 390, height: 844 });
        await page.goto(`${url}#/devices/${dev.id}`);
        await page.waitForFunction(() => document.getElementById('etag').textContent !== '');
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert(overflow <= 0, `the device page is ${overflow}px wider than a phone`);
        await shoot(page, 'device-phone');
      });
    } finally {
      await dev.client.close();
    }
  },
};
