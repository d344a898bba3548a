// The emulator's dashboard: a page per hash route, each built from the
// hub's service API (under /api/) with the iothubowner token of /session.
'use strict';

const API_VERSION = '2021-04-12';
let session = null; // {hostName, authorization, expires}
let timers = []; // the current page's pollers, stopped on navigation

// ---- DOM helpers: text always goes in as text, never as markup.

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'class') el.className = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function svg(tag, attrs) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  return el;
}

function show(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes);
}

function every(ms, fn) {
  let stopped = false;
  let t = null;
  const tick = async () => {
    if (stopped) return;
    try {
      await fn();
    } catch (err) {
      console.warn(err);
    }
    if (!stopped) t = setTimeout(tick, ms);
  };
  tick();
  timers.push(() => {
    stopped = true;
    clearTimeout(t);
  });
}

function when(t) {
  if (!t || t.startsWith('0001-')) return '—';
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString();
}

function json(v) {
  return JSON.stringify(v, null, 2);
}

// ---- The service API.

class HubError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function ensureSession() {
  if (session && new Date(session.expires) - Date.now() > 60000) return session;
  const res = await fetch('/session', { cache: 'no-store' });
  if (!res.ok) throw new Error(`the dashboard's session: ${res.status} ${await res.text()}`);
  session = await res.json();
  document.getElementById('hub').textContent = `HostName=${session.hostName}`;
  return session;
}

// api calls the service API and answers the parsed body, with the
// response's headers as .headers; an error answer throws a HubError with
// IoT Hub's error code and message.
async function api(method, path, { body, headers = {}, query = '' } = {}) {
  const s = await ensureSession();
  const init = { method, headers: { Authorization: s.authorization, ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(`/api${path}?api-version=${API_VERSION}${query}`, init);
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    let message = (data && (data.Message || data.message)) || res.statusText;
    if (typeof message === 'string' && message.startsWith('{')) {
      try {
        message = JSON.parse(message).message || message;
      } catch { /* as is */ }
    }
    message = String(message).replace(/^ErrorCode:[A-Za-z]+;/, '');
    throw new HubError(res.status, res.headers.get('iothub-errorcode') || String(res.status), message);
  }
  return { data, headers: res.headers };
}

// pages follows a paged answer (queries, jobs) up to max rows.
async function pages(method, path, body, max = 1000) {
  const rows = [];
  let token = null;
  do {
    const headers = { 'x-ms-max-item-count': '100' };
    if (token) headers['x-ms-continuation'] = token;
    const { data, headers: rh } = await api(method, path, { body, headers });
    rows.push(...(data || []));
    token = rh.get('x-ms-continuation');
  } while (token && rows.length < max);
  return rows;
}

function errorText(err) {
  return err instanceof HubError ? `${err.status} ${err.code}: ${err.message}` : String(err.message || err);
}

function statusLine(id) {
  return h('p', { id, class: 'status', role: 'status', 'aria-live': 'polite' });
}

function say(el, text, bad) {
  el.textContent = text;
  el.classList.toggle('bad', !!bad);
  el.setAttribute('role', bad ? 'alert' : 'status');
}

function stateBadge(state) {
  const on = state === 'Connected';
  return h('span', { class: on ? 'badge on' : 'badge off' }, on ? 'Connected' : 'Disconnected');
}

// ---- Devices.

async function devicesPage() {
  const filter = h('input', { type: 'search', id: 'filter', placeholder: 'device id contains…', 'aria-label': 'Filter devices by id' });
  const state = h('select', { id: 'state-filter', 'aria-label': 'Connection state' },
    h('option', { value: '' }, 'All'), h('option', { value: 'Connected' }, 'Connected'), h('option', { value: 'Disconnected' }, 'Disconnected'));
  const body = h('tbody');
  const count = h('p', { class: 'muted', 'aria-live': 'polite' });
  const err = statusLine('devices-status');
  let devices = [];
  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const rows = devices.filter((d) => (!q || d.deviceId.toLowerCase().includes(q)) && (!state.value || d.connectionState === state.value));
    body.replaceChildren(...rows.map((d) => h('tr', { 'data-device': d.deviceId },
      h('th', { scope: 'row' }, h('a', { href: `#/devices/${encodeURIComponent(d.deviceId)}` }, d.deviceId)),
      h('td', {}, stateBadge(d.connectionState)),
      h('td', {}, d.status),
      h('td', {}, (d.authentication && d.authentication.type) || ''),
      h('td', {}, when(d.lastActivityTime)),
      h('td', { class: 'num' }, d.cloudToDeviceMessageCount || 0))));
    count.textContent = `${rows.length} of ${devices.length} devices${devices.length >= 1000 ? ' (the first 1,000)' : ''}`;
  };
  filter.addEventListener('input', render);
  state.addEventListener('change', render);
  show(h('h1', {}, 'Devices'),
    h('div', { class: 'toolbar' }, filter, state),
    err,
    h('div', { class: 'scroll' }, h('table', { id: 'devices' },
      h('caption', { class: 'sr' }, 'Devices and their connection state'),
      h('thead', {}, h('tr', {}, ['Device', 'Connection', 'Status', 'Authentication', 'Last activity', 'C2D queued'].map((c) => h('th', { scope: 'col' }, c)))),
      body)),
    count);
  every(2000, async () => {
    try {
      devices = (await api('GET', '/devices', { query: '&top=1000' })).data || [];
      devices.sort((a, b) => a.deviceId.localeCompare(b.deviceId));
      say(err, '');
      render();
    } catch (e) {
      say(err, errorText(e), true);
    }
  });
}

// ---- One device.

function flatten(obj, prefix, meta, out) {
  for (const [k, v] of Object.entries(obj || {})) {
    if (k.startsWith('$')) continue;
    const path = prefix ? `${prefix}.${k}` : k;
    const m = meta && meta[k];
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, path, m, out);
    else out.push({ path, value: v, updated: m && m.$lastUpdated });
  }
  return out;
}

function withoutMeta(props) {
  const out = {};
  for (const [k, v] of Object.entries(props || {})) if (!k.startsWith('$')) out[k] = v;
  return out;
}

function connectionString(d) {
  const a = d.authentication || {};
  if (a.type === 'sas' && a.symmetricKey && a.symmetricKey.primaryKey) {
    return `HostName=${session.hostName};DeviceId=${d.deviceId};SharedAccessKey=${a.symmetricKey.primaryKey}`;
  }
  if (a.type === 'selfSigned' || a.type === 'certificateAuthority') {
    return `HostName=${session.hostName};DeviceId=${d.deviceId};x509=true`;
  }
  return '';
}

function decodeBody(b64) {
  try {
    const bytes = Uint8Array.from(atob(b64 || ''), (c) => c.charCodeAt(0));
    return new TextDecoder().decode(bytes);
  } catch {
    return b64;
  }
}

// chart draws the numeric top-level fields of JSON bodies as lines.
function chart(messages) {
  const series = new Map();
  messages.forEach((m, i) => {
    let v;
    try {
      v = JSON.parse(m.text);
    } catch {
      return;
    }
    if (!v || typeof v !== 'object') return;
    for (const [k, x] of Object.entries(v)) {
      if (typeof x !== 'number') continue;
      if (!series.has(k)) {
        if (series.size >= 4) continue;
        series.set(k, []);
      }
      series.get(k).push([i, x]);
    }
  });
  const W = 600;
  const H = 160;
  const box = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', class: 'chart', role: 'img', 'aria-label': `Numeric telemetry fields: ${[...series.keys()].join(', ') || 'none'}` });
  const n = Math.max(messages.length - 1, 1);
  let k = 0;
  const legend = h('ul', { class: 'legend' });
  for (const [name, pts] of series) {
    const ys = pts.map((p) => p[1]);
    const lo = Math.min(...ys);
    const hi = Math.max(...ys);
    const span = hi - lo || 1;
    const d = pts.map(([i, y]) => `${(i / n) * (W - 20) + 10},${H - 10 - ((y - lo) / span) * (H - 20)}`).join(' ');
    box.append(svg('polyline', { points: d, class: `line s${k}` }));
    legend.append(h('li', { class: `s${k}` }, `${name} (${lo}–${hi})`));
    k++;
  }
  return h('figure', {}, box, legend);
}

async function devicePage(id) {
  const title = h('h1', {}, id);
  const facts = h('p', { class: 'facts' });
  const cs = h('code', { id: 'connection-string' });
  const copy = h('button', { type: 'button', id: 'copy' }, 'Copy');
  const copied = statusLine('copy-status');
  copy.addEventListener('click', async () => {
    try {
      await navigator.clipboard.writeText(cs.textContent);
      say(copied, 'Copied.');
    } catch {
      const r = document.createRange();
      r.selectNodeContents(cs);
      getSelection().removeAllRanges();
      getSelection().addRange(r);
      say(copied, 'Selected: press Ctrl+C to copy.');
    }
  });

  // The twin: desired and tags editable with the etag they were loaded
  // with, so a save over someone else's change is refused (412).
  const desired = h('textarea', { id: 'desired', rows: 8, spellcheck: 'false' });
  const tags = h('textarea', { id: 'tags', rows: 6, spellcheck: 'false' });
  const etag = h('code', { id: 'etag' });
  const save = h('button', { type: 'submit', id: 'save-twin' }, 'Save twin');
  const reload = h('button', { type: 'button', id: 'reload-twin' }, 'Reload');
  const twinStatus = statusLine('twin-status');
  const reported = h('tbody', { id: 'reported' });
  const reportedVersion = h('span', { class: 'muted' });
  let loadedETag = null;
  const loadEditor = (tw) => {
    desired.value = json(withoutMeta(tw.properties && tw.properties.desired));
    tags.value = json(tw.tags || {});
    loadedETag = tw.etag;
    etag.textContent = tw.etag;
  };
  const showReported = (tw) => {
    const rep = (tw.properties && tw.properties.reported) || {};
    const rows = flatten(rep, '', rep.$metadata, []);
    reportedVersion.textContent = `$version ${rep.$version}`;
    reported.replaceChildren(...(rows.length ? rows.map((r) => h('tr', { 'data-path': r.path },
      h('th', { scope: 'row' }, r.path),
      h('td', { title: r.updated ? `$metadata.$lastUpdated: ${r.updated}` : '' }, typeof r.value === 'string' ? r.value : JSON.stringify(r.value))))
      : [h('tr', {}, h('td', { colspan: 2, class: 'muted' }, 'Nothing reported yet.'))]));
  };
  const twinForm = h('form', { id: 'twin-form', onsubmit: async (ev) => {
    ev.preventDefault();
    let patch;
    try {
      patch = { tags: JSON.parse(tags.value || '{}'), properties: { desired: JSON.parse(desired.value || '{}') } };
    } catch (e) {
      say(twinStatus, `Not valid JSON: ${e.message}`, true);
      return;
    }
    try {
      const { data } = await api('PUT', `/twins/${encodeURIComponent(id)}`, { body: patch, headers: { 'If-Match': `"${loadedETag}"` } });
      loadEditor(data);
      showReported(data);
      say(twinStatus, `Saved: desired $version ${data.properties.desired.$version}.`);
    } catch (e) {
      say(twinStatus, e.status === 412
        ? `${errorText(e)} — the twin changed since it was loaded; reload it and edit again.`
        : errorText(e), true);
    }
  } },
  h('div', { class: 'pair' },
    h('label', {}, 'Desired properties', desired),
    h('label', {}, 'Tags', tags)),
  h('p', { class: 'muted' }, 'etag ', etag),
  h('div', { class: 'buttons' }, save, reload),
  twinStatus);
  reload.addEventListener('click', async () => {
    try {
      const { data } = await api('GET', `/twins/${encodeURIComponent(id)}`);
      loadEditor(data);
      showReported(data);
      say(twinStatus, 'Reloaded.');
    } catch (e) {
      say(twinStatus, errorText(e), true);
    }
  });

  // Direct method.
  const mName = h('input', { id: 'method-name', required: true, value: 'reboot' });
  const mPayload = h('textarea', { id: 'method-payload', rows: 3, spellcheck: 'false' }, '{}');
  const mTimeout = h('input', { id: 'method-timeout', type: 'number', min: 5, max: 300, value: 30 });
  const mResult = h('pre', { id: 'method-result', 'aria-live': 'polite' });
  const methodForm = h('form', { id: 'method-form', onsubmit: async (ev) => {
    ev.preventDefault();
    let payload;
    try {
      payload = JSON.parse(mPayload.value || 'null');
    } catch (e) {
      mResult.textContent = `Not valid JSON: ${e.message}`;
      return;
    }
    mResult.textContent = 'Calling…';
    try {
      const { data } = await api('POST', `/twins/${encodeURIComponent(id)}/methods`, {
        body: { methodName: mName.value, payload, responseTimeoutInSeconds: Number(mTimeout.value) || 30 },
      });
      mResult.textContent = `status ${data.status}\n${json(data.payload)}`;
    } catch (e) {
      mResult.textContent = errorText(e);
    }
  } },
  h('label', {}, 'Method name', mName),
  h('label', {}, 'Payload (JSON)', mPayload),
  h('label', {}, 'Response timeout (s)', mTimeout),
  h('button', { type: 'submit', id: 'invoke' }, 'Invoke method'),
  mResult);

  // Cloud-to-device message.
  const cBody = h('textarea', { id: 'c2d-body', rows: 3 });
  const cProps = h('input', { id: 'c2d-properties', placeholder: 'key=value, key2=value2' });
  const cStatus = statusLine('c2d-status');
  const c2dForm = h('form', { id: 'c2d-form', onsubmit: async (ev) => {
    ev.preventDefault();
    const properties = {};
    for (const kv of cProps.value.split(',').map((s) => s.trim()).filter(Boolean)) {
      const i = kv.indexOf('=');
      if (i < 1) {
        say(cStatus, `"${kv}" is not key=value`, true);
        return;
      }
      properties[kv.slice(0, i).trim()] = kv.slice(i + 1).trim();
    }
    try {
      const { data } = await api('POST', `/emulator/devices/${encodeURIComponent(id)}/messages/devicebound`, { body: { body: cBody.value, properties } });
      say(cStatus, `Queued message ${data.messageId}.`);
    } catch (e) {
      say(cStatus, errorText(e), true);
    }
  } },
  h('label', {}, 'Message body', cBody),
  h('label', {}, 'Message properties', cProps),
  h('button', { type: 'submit', id: 'send-c2d' }, 'Send message'),
  cStatus);

  // Live telemetry, from the telemetry log.
  const tBody = h('tbody', { id: 'telemetry' });
  const tChart = h('div', { id: 'telemetry-chart' });
  const modules = h('ul', { id: 'modules' });

  show(h('p', {}, h('a', { href: '#/' }, '← Devices')), title, facts,
    h('section', { 'aria-labelledby': 'cs-h' }, h('h2', { id: 'cs-h' }, 'Connection string'),
      h('div', { class: 'copyline' }, cs, copy), copied),
    h('div', { class: 'grid' },
      h('section', { 'aria-labelledby': 'twin-h', class: 'card wide' }, h('h2', { id: 'twin-h' }, 'Twin'), twinForm,
        h('h3', {}, 'Reported properties ', reportedVersion),
        h('div', { class: 'scroll' }, h('table', { id: 'reported-table' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Property'), h('th', { scope: 'col' }, 'Value'))), reported))),
      h('section', { 'aria-labelledby': 'method-h', class: 'card' }, h('h2', { id: 'method-h' }, 'Direct method'), methodForm),
      h('section', { 'aria-labelledby': 'c2d-h', class: 'card' }, h('h2', { id: 'c2d-h' }, 'Cloud-to-device message'), c2dForm),
      h('section', { 'aria-labelledby': 'mod-h', class: 'card' }, h('h2', { id: 'mod-h' }, 'Modules'), modules),
      h('section', { 'aria-labelledby': 'tel-h', class: 'card wide' }, h('h2', { id: 'tel-h' }, 'Live telemetry'), tChart,
        h('div', { class: 'scroll tall' }, h('table', {},
          h('thead', {}, h('tr', {}, ['Enqueued', 'Module', 'Properties', 'Body'].map((c) => h('th', { scope: 'col' }, c)))), tBody)))));

  try {
    const { data } = await api('GET', `/twins/${encodeURIComponent(id)}`);
    loadEditor(data);
    showReported(data);
  } catch (e) {
    say(twinStatus, errorText(e), true);
  }
  every(1000, async () => {
    const { data: tw } = await api('GET', `/twins/${encodeURIComponent(id)}`);
    showReported(tw);
    if (loadedETag && tw.etag !== loadedETag && !twinStatus.classList.contains('bad')) {
      say(twinStatus, 'The twin has changed since it was loaded: Reload shows the new version.');
    }
  });
  every(2000, async () => {
    const { data: d } = await api('GET', `/devices/${encodeURIComponent(id)}`);
    facts.replaceChildren(stateBadge(d.connectionState), ` ${d.status} · ${(d.authentication || {}).type} · last activity ${when(d.lastActivityTime)} · ${d.cloudToDeviceMessageCount || 0} C2D queued`);
    cs.textContent = connectionString(d);
    const { data: mods } = await api('GET', `/devices/${encodeURIComponent(id)}/modules`);
    modules.replaceChildren(...(mods && mods.length
      ? mods.map((m) => h('li', { 'data-module': m.moduleId }, h('strong', {}, m.moduleId), ' ', stateBadge(m.connectionState),
        ` ${(m.authentication || {}).type || ''} · last activity ${when(m.lastActivityTime)}`))
      : [h('li', { class: 'muted' }, 'No modules.')]));
  });
  every(1000, async () => {
    const { data } = await api('GET', `/emulator/devices/${encodeURIComponent(id)}/messages`);
    const msgs = (data || []).map((m) => ({ ...m, text: decodeBody(m.body) }));
    tChart.replaceChildren(chart(msgs));
    tBody.replaceChildren(...msgs.slice().reverse().map((m) => h('tr', {},
      h('td', {}, when(m.enqueuedTime)),
      h('td', {}, m.moduleId || ''),
      h('td', {}, Object.entries(m.properties || {}).map(([k, v]) => `${k}=${v}`).join(', ')),
      h('td', {}, h('code', {}, m.text)))));
  });
}

// ---- Query.

function resultsTable(rows) {
  if (!rows.length) return h('p', { class: 'muted' }, 'No results.');
  const cols = [];
  for (const r of rows) {
    if (r && typeof r === 'object') for (const k of Object.keys(r)) if (!cols.includes(k)) cols.push(k);
  }
  if (!cols.length) return h('ul', {}, rows.map((r) => h('li', {}, JSON.stringify(r))));
  const cell = (v) => (v === undefined ? '' : typeof v === 'object' ? JSON.stringify(v) : String(v));
  return h('div', { class: 'scroll' }, h('table', { id: 'results' },
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows.map((r) => h('tr', {}, cols.map((c) => h('td', {}, h('code', {}, cell(r && r[c])))))))));
}

function queryPage() {
  const q = h('textarea', { id: 'query', rows: 4, spellcheck: 'false' }, sessionStorage.getItem('query') || 'SELECT * FROM devices');
  const out = h('div', { id: 'query-results' });
  const status = statusLine('query-status');
  const form = h('form', { onsubmit: async (ev) => {
    ev.preventDefault();
    sessionStorage.setItem('query', q.value);
    say(status, 'Running…');
    try {
      const rows = await pages('POST', '/devices/query', { query: q.value });
      say(status, `${rows.length} result${rows.length === 1 ? '' : 's'}.`);
      out.replaceChildren(resultsTable(rows));
    } catch (e) {
      say(status, errorText(e), true);
      out.replaceChildren();
    }
  } }, h('label', {}, 'Query', q), h('button', { type: 'submit', id: 'run-query' }, 'Run query'));
  show(h('h1', {}, 'Twin query'), form, status, out);
}

// ---- Jobs.

function jobsPage() {
  const body = h('tbody', { id: 'jobs' });
  const status = statusLine('jobs-status');
  show(h('h1', {}, 'Jobs'), status, h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Job', 'Type', 'Status', 'Progress', 'Start', 'End'].map((c) => h('th', { scope: 'col' }, c)))), body)));
  every(2000, async () => {
    try {
      const jobs = await pages('GET', '/jobs/v2/query');
      jobs.sort((a, b) => String(b.createdTime).localeCompare(String(a.createdTime)));
      body.replaceChildren(...(jobs.length ? jobs.map((j) => {
        const s = j.deviceJobStatistics || {};
        const done = (s.succeededCount || 0) + (s.failedCount || 0);
        const total = s.deviceCount || 0;
        return h('tr', { 'data-job': j.jobId },
          h('th', { scope: 'row' }, j.jobId), h('td', {}, j.type), h('td', {}, j.status),
          h('td', {}, h('progress', { max: total || 1, value: done, 'aria-label': `${j.jobId} progress` }),
            ` ${done}/${total}${s.failedCount ? ` (${s.failedCount} failed)` : ''}`),
          h('td', {}, when(j.startTime)), h('td', {}, when(j.endTime)));
      }) : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No jobs.'))]));
      say(status, '');
    } catch (e) {
      say(status, errorText(e), true);
    }
  });
}

// ---- Configurations.

function configurationsPage() {
  const body = h('tbody', { id: 'configurations' });
  const status = statusLine('configurations-status');
  show(h('h1', {}, 'Automatic device configurations'), status, h('div', { class: 'scroll' }, h('table', {},
    h('thead', {}, h('tr', {}, ['Configuration', 'Priority', 'Target condition', 'Targeted', 'Applied', 'Updated'].map((c) => h('th', { scope: 'col' }, c)))), body)));
  every(3000, async () => {
    try {
      const { data } = await api('GET', '/configurations', { query: '&top=100' });
      const cfgs = data || [];
      body.replaceChildren(...(cfgs.length ? cfgs.map((c) => {
        const r = (c.systemMetrics && c.systemMetrics.results) || {};
        return h('tr', { 'data-configuration': c.id },
          h('th', { scope: 'row' }, c.id), h('td', { class: 'num' }, c.priority), h('td', {}, h('code', {}, c.targetCondition)),
          h('td', { class: 'num' }, r.targetedCount || 0), h('td', { class: 'num' }, r.appliedCount || 0), h('td', {}, when(c.lastUpdatedTimeUtc)));
      }) : [h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No configurations.'))]));
      say(status, '');
    } catch (e) {
      say(status, errorText(e), true);
    }
  });
}

// ---- Live events.

function eventsPage() {
  const list = h('ol', { id: 'events', reversed: true, class: 'events' });
  const status = statusLine('events-status');
  let after = 0;
  show(h('h1', {}, 'Live events'), h('p', { class: 'muted' }, 'Connects, disconnects, method calls and the errors the hub answered, newest first.'), status, list);
  every(1000, async () => {
    try {
      const { data } = await api('GET', '/emulator/activity', { query: `&after=${after}` });
      for (const a of data || []) {
        after = a.seq;
        const who = a.deviceId ? (a.moduleId ? `${a.deviceId}/${a.moduleId}` : a.deviceId) : '';
        list.prepend(h('li', { class: `event ${a.kind}` },
          h('time', { datetime: a.time }, new Date(a.time).toLocaleTimeString()), ' ',
          h('span', { class: `badge ${a.kind}` }, a.kind), ' ',
          who ? h('a', { href: `#/devices/${encodeURIComponent(a.deviceId)}` }, who) : '', ' ', a.detail));
      }
      while (list.children.length > 500) list.lastChild.remove();
      say(status, '');
    } catch (e) {
      say(status, errorText(e), true);
    }
  });
}

// ---- Routing and theme.

function route() {
  for (const stop of timers) stop();
  timers = [];
  const hash = location.hash.replace(/^#/, '') || '/';
  const parts = hash.split('/').filter(Boolean);
  let page = 'devices';
  if (parts[0] === 'devices' && parts[1]) {
    devicePage(decodeURIComponent(parts[1]));
  } else if (parts[0] === 'query') {
    page = 'query';
    queryPage();
  } else if (parts[0] === 'jobs') {
    page = 'jobs';
    jobsPage();
  } else if (parts[0] === 'configurations') {
    page = 'configurations';
    configurationsPage();
  } else if (parts[0] === 'events') {
    page = 'events';
    eventsPage();
  } else {
    devicesPage();
  }
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === page) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function applyTheme(theme) {
  document.documentElement.dataset.theme = theme;
  const b = document.getElementById('theme');
  b.setAttribute('aria-pressed', String(theme === 'dark'));
  b.textContent = theme === 'dark' ? 'Light theme' : 'Dark theme';
}

window.addEventListener('DOMContentLoaded', () => {
  const saved = localStorage.getItem('theme');
  applyTheme(saved || (matchMedia('(prefers-color-scheme: dark)').matches ? 'dark' : 'light'));
  document.getElementById('theme').addEventListener('click', () => {
    const next = document.documentElement.dataset.theme === 'dark' ? 'light' : 'dark';
    localStorage.setItem('theme', next);
    applyTheme(next);
  });
  window.addEventListener('hashchange', route);
  ensureSession().catch((e) => show(h('p', { class: 'status bad', role: 'alert' }, errorText(e))));
  route();
});
