// fleet dashboard. Every datum and every action goes through fleet's v1 API
// with the caller's credentials: the token typed in (kept in sessionStorage,
// so it dies with the tab) or the client certificate the browser presents.
'use strict';

(() => {
  const TOKEN_KEY = 'fleet.token';
  const ROW = 30;             // px, the units table's row height (app.css --row)
  const OVERSCAN = 10;        // rows rendered beyond the visible ones
  // PAGE is the API's largest page: it cuts every page from a fresh read of
  // the whole collection, so fewer pages mean fewer reads.
  const PAGE = 65535;
  const FEED_MAX = 500;       // events kept in the feed
  const REREAD_BATCH = 50;    // unit names per GET /state?unitName=... request
  const FULL_RELOAD_AT = 500; // more dirty units than this: list everything instead

  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  const st = {
    token: sessionStorage.getItem(TOKEN_KEY) || '',
    machines: new Map(),     // id -> machine
    units: new Map(),        // name -> unit
    states: new Map(),       // name -> [state]
    sorted: [],              // unit names, sorted
    shown: [],               // names after the filters
    dirty: new Set(),        // units named by events, to re-read
    flushing: false,
    loaded: false,
    tab: '',
    optional: {},            // feature -> bool: rollouts, reboots, drain
    eventsAbort: null,
    started: false,
  };

  class APIError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  // api calls fleet's API; errors carry the API's own message.
  async function api(method, path, body, extraHeaders) {
    const headers = Object.assign({}, extraHeaders || {});
    if (st.token) headers['Authorization'] = 'Bearer ' + st.token;
    const init = { method, headers, cache: 'no-store', credentials: 'same-origin' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    const res = await fetch(path, init);
    if (!res.ok) {
      let msg = res.status + ' ' + res.statusText;
      try { msg = (await res.json()).error.message || msg; } catch (_) { /* not fleet's error shape */ }
      if (res.status === 401) signedOut(msg);
      throw new APIError(res.status, msg);
    }
    if (res.status === 204) return null;
    const ct = res.headers.get('Content-Type') || '';
    return ct.includes('json') ? res.json() : res.text();
  }

  async function listAll(path, key) {
    let out = [];
    let next = '';
    const sep = path.includes('?') ? '&' : '?';
    do {
      const q = path + sep + 'pageSize=' + PAGE + (next ? '&nextPageToken=' + encodeURIComponent(next) : '');
      const page = await api('GET', q);
      out = out.concat(page[key] || []);
      next = page.nextPageToken || '';
    } while (next);
    return out;
  }

  // ---- banner, confirm ----------------------------------------------------
  let bannerTimer = 0;
  function banner(msg, info) {
    $('banner-text').textContent = msg;
    $('banner').classList.toggle('info', !!info);
    $('banner').hidden = false;
    // A confirmation goes away by itself; an error stays until dismissed.
    clearTimeout(bannerTimer);
    if (info) bannerTimer = setTimeout(() => { $('banner').hidden = true; }, 6000);
  }
  $('banner-close').addEventListener('click', () => { $('banner').hidden = true; });

  function confirmAction(text) {
    return new Promise((resolve) => {
      const d = $('confirm');
      $('confirm-text').textContent = text;
      d.returnValue = '';
      d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
      d.showModal();
    });
  }

  // ---- sign-in ------------------------------------------------------------
  function signedOut(msg) {
    stopEvents();
    st.started = false;
    $('tabs').hidden = true;
    $('signout').hidden = true;
    document.querySelectorAll('.view').forEach((v) => { v.hidden = true; });
    $('login').hidden = false;
    const e = $('login-error');
    e.textContent = st.token ? msg : '';
    e.hidden = !st.token;
    $('token').focus();
  }

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    st.token = $('token').value.trim();
    $('token').value = '';
    if (st.token) sessionStorage.setItem(TOKEN_KEY, st.token); else sessionStorage.removeItem(TOKEN_KEY);
    start();
  });

  $('signout').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    st.token = '';
    location.reload();
  });

  // start checks the credentials with a read, then shows the dashboard and
  // follows the event stream (whose first event triggers the full read).
  async function start() {
    try {
      await api('GET', '/fleet/v1/machines?pageSize=1');
    } catch (e) {
      if (e.status !== 401) banner('fleet API: ' + e.message);
      if (e.status !== 401) signedOut(e.message);
      return;
    }
    $('login').hidden = true;
    $('tabs').hidden = false;
    $('signout').hidden = !st.token;
    st.started = true;
    showTab(location.hash.slice(1) || 'units');
    probeOptional();
    followEvents();
  }

  // ---- optional endpoints -------------------------------------------------
  // exists tells an endpoint the API has (any answer) from one it lacks: the
  // API's catch-all 404 says "no such API resource".
  async function exists(path) {
    try {
      await api('GET', path);
      return true;
    } catch (e) {
      return !(e.status === 404 && /no such API resource/.test(e.message));
    }
  }

  async function probeOptional() {
    for (const f of ['rollouts', 'reboots']) {
      st.optional[f] = await exists('/fleet/v1/' + f);
      document.querySelector(`.tab[data-tab="${f}"]`).hidden = !st.optional[f];
      if (st.optional[f]) refreshOptional(f);
    }
    const any = st.machines.keys().next().value || 'probe';
    st.optional.drain = await exists('/fleet/v1/machines/' + encodeURIComponent(any) + '/drain');
    renderMachines();
    document.body.dataset.probed = 'true';
  }

  async function refreshOptional(f) {
    if (!st.optional[f]) return;
    try {
      const v = await api('GET', '/fleet/v1/' + f);
      const box = $(f + '-body');
      if (f === 'rollouts' && isRollouts(v)) renderRollouts(box, v.rollouts);
      else if (f === 'reboots' && isReboots(v)) renderReboots(box, v);
      else renderGeneric(box, v);
    } catch (e) {
      $(f + '-body').textContent = e.message;
    }
  }

  // The shapes fleetd answers (api.RolloutStatus, api.RebootStatus); an
  // answer of another shape (another fleetd version) is drawn generically.
  const isRollouts = (v) => v && Array.isArray(v.rollouts) &&
    v.rollouts.every((r) => r && typeof r.phase === 'string' && Array.isArray(r.steps || []));
  const isReboots = (v) => v && ['holders', 'queue', 'requests', 'machines'].every((k) => Array.isArray(v[k] || []));

  // when shows an API time as the page's local date and time, '-' for none.
  const when = (t) => {
    if (!t || t.startsWith('0001-')) return '-';
    const d = new Date(t);
    return isNaN(d) ? t : d.toLocaleString();
  };

  // drawTable appends a titled table of rows, each an array of cells.
  function drawTable(box, title, head, rows) {
    if (title) box.append(el('h3', '', title));
    if (!rows.length) { box.append(el('p', 'muted', 'none')); return; }
    const t = el('table');
    const hr = el('tr');
    head.forEach((h) => hr.append(el('th', '', h)));
    const th = el('thead');
    th.append(hr);
    const tb = el('tbody');
    rows.forEach((r) => { const tr = el('tr'); r.forEach((c) => tr.append(el('td', '', c === undefined || c === '' ? '-' : String(c)))); tb.append(tr); });
    t.append(th, tb);
    box.append(t);
  }

  // renderRollouts: a row per rollout; its steps as "unit[ on machine] state".
  function renderRollouts(box, rs) {
    box.replaceChildren();
    drawTable(box, '', ['rollout', 'phase', 'healthy', 'to', 'started', 'steps', 'message'], rs.map((r) => [
      r.id,
      r.phase + (r.paused ? ' (paused)' : ''),
      `${r.healthy || 0}/${r.total || 0}`,
      (r.to || '').slice(0, 7),
      when(r.started),
      (r.steps || []).map((s) => s.unit + (s.machineID ? ' on ' + shortID(s.machineID) : '') + ' ' + s.state).join(', '),
      r.message || '',
    ]));
  }

  // renderReboots: the policy in a line, then slots, queue, requests and
  // each machine's last step and reboot.
  function renderReboots(box, v) {
    box.replaceChildren();
    const p = v.policy;
    box.append(el('p', '', p ? `at most ${p.maxConcurrent} at a time, window ${p.window || 'any time'}, timeout ${p.timeout}` : 'no coordinator has started'));
    drawTable(box, 'rebooting (slots held)', ['machine', 'since', 'deadline'], (v.holders || []).map((h) => [shortID(h.machineID), when(h.since), when(h.deadline)]));
    drawTable(box, 'waiting for a slot', ['machine', 'since', 'reason'], (v.queue || []).map((q) => [shortID(q.machineID), when(q.since), q.reason]));
    drawTable(box, 'asked (fleetctl reboot)', ['machine', 'since', 'by'], (v.requests || []).map((q) => [shortID(q.machineID), when(q.since), q.identity]));
    drawTable(box, 'machines', ['machine', 'last step', 'at', 'detail', 'last reboot', 'ended'], (v.machines || []).map((m) => [
      shortID(m.machineID), m.step, when(m.stepAt), m.detail, m.lastOutcome, when(m.lastEnded)]));
  }

  // renderGeneric shows an answer whose shape this page does not know: each
  // list of objects as a table, other values as key/value rows.
  function renderGeneric(box, v) {
    box.replaceChildren();
    const cell = (x) => (x === null || x === undefined) ? '-' : (typeof x === 'object' ? JSON.stringify(x) : String(x));
    const table = (title, rows) => {
      const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
      drawTable(box, title, cols, rows.map((r) => cols.map((c) => cell(r[c]))));
    };
    if (Array.isArray(v)) { table('', v); return; }
    const plain = [];
    for (const [k, x] of Object.entries(v || {})) {
      if (Array.isArray(x) && x.every((i) => i && typeof i === 'object')) table(k, x);
      else plain.push({ key: k, value: x });
    }
    if (plain.length) table('', plain);
  }

  // ---- tabs ---------------------------------------------------------------
  function showTab(name) {
    if (!$(name) || !$(name).classList.contains('view')) name = 'units';
    const tab = document.querySelector(`.tab[data-tab="${name}"]`);
    if (tab.hidden) name = 'units';
    st.tab = name;
    document.querySelectorAll('.view').forEach((v) => { v.hidden = v.id !== name; });
    document.querySelectorAll('.tab').forEach((b) => b.classList.toggle('active', b.dataset.tab === name));
    if (location.hash !== '#' + name) history.replaceState(null, '', '#' + name);
    if (name === 'units') renderUnits();
    if (name === 'rollouts' || name === 'reboots') refreshOptional(name);
  }
  $('tabs').addEventListener('click', (ev) => {
    const b = ev.target.closest('.tab');
    if (b) showTab(b.dataset.tab);
  });

  // ---- data ---------------------------------------------------------------
  // loadAll reads the whole cluster. Its performance marks (fetched,
  // drawn) are what the 10,000-unit benchmark reads.
  async function loadAll() {
    performance.mark('fleet-load-start');
    const [machines, units, states] = await Promise.all([
      listAll('/fleet/v1/machines', 'machines'),
      listAll('/fleet/v1/units', 'units'),
      listAll('/fleet/v1/state', 'states'),
    ]);
    st.machines = new Map(machines.map((m) => [m.id, m]));
    st.units = new Map(units.map((u) => [u.name, u]));
    st.states = new Map();
    for (const s of states) addState(s);
    performance.mark('fleet-fetched');
    st.sorted = [...st.units.keys()].sort();
    st.loaded = true;
    renderAll();
    performance.mark('fleet-drawn');
  }

  function addState(s) {
    const l = st.states.get(s.name);
    if (l) l.push(s); else st.states.set(s.name, [s]);
  }

  async function loadMachines() {
    const machines = await listAll('/fleet/v1/machines', 'machines');
    st.machines = new Map(machines.map((m) => [m.id, m]));
    renderMachines();
    renderUnits();
  }

  // reread fetches again only the units events named.
  async function reread(names) {
    if (names.length > FULL_RELOAD_AT) return loadAll();
    const got = await Promise.all(names.map((n) => api('GET', '/fleet/v1/units/' + encodeURIComponent(n))
      .catch((e) => { if (e.status === 404) return null; throw e; })));
    const states = [];
    for (let i = 0; i < names.length; i += REREAD_BATCH) {
      const q = names.slice(i, i + REREAD_BATCH).map((n) => 'unitName=' + encodeURIComponent(n)).join('&');
      states.push(...await listAll('/fleet/v1/state?' + q, 'states'));
    }
    let changed = false; // a unit came or went: sort again
    names.forEach((n, i) => {
      if (got[i]) {
        if (!st.units.has(n)) changed = true;
        st.units.set(n, got[i]);
      } else if (st.units.delete(n)) {
        changed = true;
      }
      st.states.delete(n);
    });
    states.forEach(addState);
    if (changed) st.sorted = [...st.units.keys()].sort();
    renderAll();
  }

  function markDirty(name) {
    st.dirty.add(name);
    if (!st.flushing && st.loaded) flush();
  }

  // flush re-reads the dirty units; events that come meanwhile wait for the
  // next round, so a burst costs a few requests, not one per event.
  async function flush() {
    st.flushing = true;
    try {
      while (st.dirty.size && st.loaded) {
        const names = [...st.dirty];
        st.dirty.clear();
        try {
          await reread(names);
        } catch (e) {
          if (e.status !== 401) banner('re-reading units: ' + e.message);
          return;
        }
      }
    } finally {
      st.flushing = false;
    }
  }

  // ---- events -------------------------------------------------------------
  function stopEvents() {
    if (st.eventsAbort) st.eventsAbort.abort();
    st.eventsAbort = null;
  }

  function setLive(on) {
    $('live').textContent = on ? 'live' : 'reconnecting';
    $('live').className = 'live ' + (on ? 'on' : 'off');
  }

  // followEvents reads GET /fleet/v1/events (newline-delimited JSON) with a
  // streaming fetch, since EventSource cannot send the Authorization header.
  // Each stream starts with stream.started; everything is read again then,
  // so nothing between two streams is missed.
  async function followEvents() {
    let backoff = 250;
    while (st.started) {
      const ctrl = new AbortController();
      st.eventsAbort = ctrl;
      try {
        const headers = st.token ? { Authorization: 'Bearer ' + st.token } : {};
        const res = await fetch('/fleet/v1/events', { headers, signal: ctrl.signal, cache: 'no-store', credentials: 'same-origin' });
        if (res.status === 401) { signedOut('the API no longer accepts this token'); return; }
        if (!res.ok) throw new Error('event stream: ' + res.status);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 1);
            if (line.trim()) onEvent(JSON.parse(line));
            backoff = 250;
          }
        }
      } catch (e) {
        if (ctrl.signal.aborted) return;
      }
      setLive(false);
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }

  function onEvent(e) {
    if (e.type === 'stream.started') {
      setLive(true);
      st.loaded = false;
      loadAll().then(() => flush()).catch((err) => { if (err.status !== 401) banner('listing the cluster: ' + err.message); });
    }
    addToFeed(e);
    if (e.unit && e.type.startsWith('unit.')) markDirty(e.unit);
    if (e.type.startsWith('machine.') && st.loaded) loadMachines().catch(() => {});
    for (const f of ['rollouts', 'reboots']) {
      if (e.type.startsWith(f.slice(0, -1) + '.') || (e.action || '').startsWith(f.slice(0, -1))) refreshOptional(f);
    }
  }

  function describe(e) {
    if (e.type === 'stream.started') return 'engine leader ' + (e.machineID ? shortID(e.machineID) : 'none');
    if (e.type === 'api.call') {
      return [e.identity, e.action, e.unit, e.to ? '→ ' + e.to : '', e.result ? '(' + e.result + ')' : ''].filter(Boolean).join(' ');
    }
    const parts = [];
    if (e.unit) parts.push(e.unit);
    if (e.machineID) parts.push('on ' + shortID(e.machineID));
    if (e.from || e.to) parts.push((e.from ? e.from + ' ' : '') + '→ ' + (e.to || 'none'));
    if (e.identity) parts.push('by ' + e.identity);
    if (e.action) parts.push(e.action);
    if (e.result) parts.push('(' + e.result + ')');
    return parts.join(' ');
  }

  function addToFeed(e) {
    const li = el('li');
    li.dataset.type = e.type;
    const t = e.time ? new Date(e.time) : new Date();
    li.append(el('span', 't', t.toTimeString().slice(0, 8)), el('span', 'ty', e.type), el('span', '', describe(e)));
    const feed = $('event-feed');
    feed.prepend(li);
    while (feed.childElementCount > FEED_MAX) feed.lastElementChild.remove();
  }

  // ---- rendering ----------------------------------------------------------
  const shortID = (id) => (id || '').slice(0, 8);

  function machineLabel(id) {
    if (!id) return '-';
    const m = st.machines.get(id);
    return shortID(id) + (m ? ' ' + m.primaryIP : '');
  }

  function renderAll() {
    $('unit-count').textContent = st.units.size;
    $('machine-count').textContent = st.machines.size;
    renderMachines();
    renderUnits();
  }

  function renderMachines() {
    const count = new Map();
    const note = (id, name) => {
      if (!id) return;
      if (!count.has(id)) count.set(id, new Set());
      count.get(id).add(name);
    };
    for (const u of st.units.values()) note(u.machineID, u.name);
    for (const [name, l] of st.states) l.forEach((s) => note(s.machineID, name));
    const tb = $('machine-rows');
    tb.replaceChildren();
    const ids = [...st.machines.keys()].sort();
    for (const id of ids) {
      const m = st.machines.get(id);
      const tr = el('tr');
      tr.dataset.machine = id;
      const meta = el('td');
      Object.entries(m.metadata || {}).sort().forEach(([k, v]) => meta.append(el('span', 'tag', k + '=' + v)));
      const state = m.state || 'active';
      const cap = m.capacity === undefined ? '-' : (typeof m.capacity === 'object' ? Object.entries(m.capacity).map(([k, v]) => k + '=' + v).join(' ') : String(m.capacity));
      const act = el('td');
      if (st.optional.drain) {
        const b = el('button', 'act danger', 'Drain');
        b.type = 'button';
        b.dataset.action = 'drain';
        b.dataset.machine = id;
        act.append(b);
      }
      tr.append(el('td', 'mono', id), el('td', 'mono', m.primaryIP || '-'), meta, el('td', 'st-' + state, state),
        el('td', 'num', String((count.get(id) || new Set()).size)), el('td', 'mono', cap), act);
      tb.append(tr);
    }
  }

  function unitView(name) {
    const u = st.units.get(name);
    const states = st.states.get(name) || [];
    let active = '-';
    let activeClass = 'st-none';
    let reason = u.unplacedReason || '';
    let machine = u.machineID || '';
    if (states.length === 1 || (states.length && u.machineID)) {
      const s = states.find((x) => x.machineID === u.machineID) || states[0];
      active = s.systemdActiveState + '/' + s.systemdSubState;
      activeClass = 'st-' + s.systemdActiveState;
      machine = s.machineID;
      if (s.reason) reason = s.reason;
    } else if (states.length > 1) { // a global unit
      const n = states.filter((s) => s.systemdActiveState === 'active').length;
      active = n + '/' + states.length + ' active';
      activeClass = n === states.length ? 'st-active' : 'st-activating';
      machine = states.length + ' machines';
    }
    return { u, states, active, activeClass, reason, machine };
  }

  function matches(name, fName, fMachine, fState) {
    if (fName && !name.toLowerCase().includes(fName)) return false;
    if (!fMachine && !fState) return true;
    const v = unitView(name);
    if (fMachine) {
      const ids = v.states.map((s) => s.machineID).concat(v.u.machineID ? [v.u.machineID] : []);
      if (!ids.some((id) => id.toLowerCase().includes(fMachine) || ((st.machines.get(id) || {}).primaryIP || '').includes(fMachine))) return false;
    }
    if (fState) {
      const words = [v.u.desiredState, v.u.currentState];
      v.states.forEach((s) => words.push(s.systemdActiveState, s.systemdSubState));
      if (v.u.unplacedReason) words.push('unplaced');
      if (!words.includes(fState)) return false;
    }
    return true;
  }

  function applyFilters() {
    const fName = $('f-name').value.trim().toLowerCase();
    const fMachine = $('f-machine').value.trim().toLowerCase();
    const fState = $('f-state').value;
    st.shown = (fName || fMachine || fState) ? st.sorted.filter((n) => matches(n, fName, fMachine, fState)) : st.sorted;
    const units = (n) => n + (n === 1 ? ' unit' : ' units');
    $('unit-shown').textContent = st.shown.length === st.sorted.length ? units(st.sorted.length) : st.shown.length + ' of ' + units(st.sorted.length);
  }

  // renderUnits draws only the rows in view (virtualised): a page with
  // 10,000 units holds a few dozen rows in its DOM.
  function renderUnits() {
    applyFilters();
    drawRows();
  }

  function drawRows() {
    if (st.tab !== 'units') return;
    const vp = $('units-viewport');
    const sp = $('units-spacer');
    sp.style.height = (st.shown.length * ROW) + 'px';
    const first = Math.max(0, Math.floor(vp.scrollTop / ROW) - OVERSCAN);
    const last = Math.min(st.shown.length, Math.ceil((vp.scrollTop + vp.clientHeight) / ROW) + OVERSCAN);
    const rows = [];
    for (let i = first; i < last; i++) rows.push(unitRow(st.shown[i], i));
    if (!st.shown.length && st.loaded) {
      rows.push(el('div', 'empty muted', st.sorted.length ? 'No unit matches the filters.' : 'No units submitted.'));
    }
    sp.replaceChildren(...rows);
  }

  function unitRow(name, i) {
    const v = unitView(name);
    const r = el('div', 'row');
    r.style.top = (i * ROW) + 'px';
    r.dataset.unit = name;
    const acts = el('span');
    for (const [a, label] of [['start', 'Start'], ['stop', 'Stop'], ['destroy', 'Destroy']]) {
      const b = el('button', 'act' + (a === 'destroy' ? ' danger' : ''), label);
      b.type = 'button';
      b.dataset.action = a;
      b.dataset.unit = name;
      acts.append(b);
    }
    const nameCell = el('span', 'mono', name);
    nameCell.title = name;
    const reason = el('span', 'reason', v.reason || '');
    reason.title = v.reason || '';
    const active = el('span', v.activeClass, v.active);
    active.dataset.col = 'active';
    r.append(nameCell, el('span', '', v.u.desiredState || '-'), el('span', '', v.u.currentState || '-'), active,
      el('span', 'mono', v.machine && !v.machine.includes(' machines') ? machineLabel(v.machine) : (v.machine || '-')), reason, acts);
    return r;
  }

  let scrollPending = false;
  $('units-viewport').addEventListener('scroll', () => {
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(() => { scrollPending = false; drawRows(); });
  });
  window.addEventListener('resize', () => drawRows());
  for (const id of ['f-name', 'f-machine', 'f-state']) {
    $(id).addEventListener('input', () => { $('units-viewport').scrollTop = 0; renderUnits(); });
  }

  // ---- actions ------------------------------------------------------------
  const unitActions = {
    start: { text: (n) => `Start ${n}? Its desired state becomes launched.`, run: (n) => setTarget(n, 'launched'), done: 'start requested' },
    stop: { text: (n) => `Stop ${n}? Its desired state becomes loaded.`, run: (n) => setTarget(n, 'loaded'), done: 'stop requested' },
    destroy: { text: (n) => `Destroy ${n}? It is stopped and removed from the cluster.`, run: (n) => api('DELETE', '/fleet/v1/units/' + encodeURIComponent(n)), done: 'destroyed' },
  };

  function setTarget(name, state) {
    // If-Match: * updates only; a unit destroyed meanwhile is a 404, not a new unit.
    return api('PUT', '/fleet/v1/units/' + encodeURIComponent(name), { desiredState: state }, { 'If-Match': '*' });
  }

  document.addEventListener('click', async (ev) => {
    const b = ev.target.closest('button[data-action]');
    if (!b) return;
    const a = b.dataset.action;
    let text;
    let run;
    let done;
    if (a === 'drain') {
      const id = b.dataset.machine;
      text = `Drain machine ${id}? Its units are moved to other machines and it gets no new ones.`;
      run = () => api('POST', '/fleet/v1/machines/' + encodeURIComponent(id) + '/drain', {});
      done = 'drain of ' + shortID(id) + ' requested';
    } else {
      const n = b.dataset.unit;
      text = unitActions[a].text(n);
      run = () => unitActions[a].run(n);
      done = n + ': ' + unitActions[a].done;
    }
    if (!await confirmAction(text)) return;
    try {
      await run();
      banner(done, true);
    } catch (e) {
      banner(e.message);
    }
  });

  start();
})();
