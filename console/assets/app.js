// tasker web console: hash-routed pages over the orchestrator's /v1 API (same origin).
'use strict';

const TASK_STATES = ['pending', 'initializing', 'enqueuing_steps', 'steps_in_process', 'evaluating_results',
  'waiting_for_dependencies', 'waiting_for_retry', 'blocked_by_failures', 'complete', 'error', 'cancelled',
  'resolved_manually'];
const FINAL_TASK = new Set(['complete', 'error', 'cancelled', 'resolved_manually']);
const FINAL_STEP = new Set(['complete', 'cancelled', 'resolved_manually']);
const POLL_MS = 1500;
const CRED_KEY = 'tasker.console.credential';

let generation = 0; // bumped on every navigation; a stale poll stops when it sees a newer one

// ---- DOM helpers ----

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}

function badge(state) { return h('span', { class: 'badge st-' + state, 'data-state': state }, state); }
function when(t) { return t ? String(t).replace('T', ' ').replace(/\.\d+Z?$|Z$/, '') : '—'; }
function shortID(id) { return id ? '…' + id.slice(-12) : ''; } // UUIDv7s share their leading (time) digits

function render(...nodes) {
  const main = document.getElementById('main');
  main.replaceChildren(...nodes.flat());
}

function banner(msg) {
  const b = document.getElementById('banner');
  b.textContent = msg || '';
  b.hidden = !msg;
}

// ---- API ----

function credentialHeaders() {
  const c = sessionStorage.getItem(CRED_KEY);
  if (!c) return {};
  // A JWT has three base64url parts; anything else is an API key.
  return /^[\w-]+\.[\w-]+\.[\w-]+$/.test(c) ? { Authorization: 'Bearer ' + c } : { 'X-API-Key': c };
}

class APIError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function api(method, path, body) {
  const opts = { method, headers: { Accept: 'application/json', ...credentialHeaders() } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const resp = await fetch(path, opts);
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!resp.ok) {
    const msg = (data && data.error && data.error.message) || (resp.status + ' ' + resp.statusText);
    if (resp.status === 401 || resp.status === 403) {
      document.getElementById('auth-form').hidden = false;
      banner((resp.status === 401 ? 'Authentication required: ' : 'Not allowed: ') + msg);
    }
    throw new APIError(resp.status, msg);
  }
  return data;
}

function showError(err) {
  render(h('div', { class: 'error-box' }, 'Error: ' + err.message));
}

// ---- confirm dialog ----

function confirmAction(title, text, withResult) {
  const dlg = document.getElementById('confirm');
  document.getElementById('confirm-title').textContent = title;
  document.getElementById('confirm-text').textContent = text;
  document.getElementById('confirm-extra').hidden = !withResult;
  return new Promise(resolve => {
    dlg.addEventListener('close', () => {
      if (dlg.returnValue !== 'ok') return resolve(null);
      resolve({ reason: document.getElementById('confirm-reason').value || 'console',
        result: document.getElementById('confirm-result').value });
    }, { once: true });
    dlg.returnValue = '';
    dlg.showModal();
  });
}

// ---- pages ----

async function overview(gen) {
  const count = async q => (await api('GET', '/v1/tasks?per_page=1&' + q)).pagination.total_count;
  const [states, tmpl] = await Promise.all([
    Promise.all(TASK_STATES.map(st => st === 'pending' ? Promise.resolve(null) : count('status=' + st))),
    api('GET', '/v1/templates').catch(() => null),
  ]);
  const namespaces = [...new Set(((tmpl && tmpl.templates) || []).map(t => t.namespace))].sort();
  const nsCounts = await Promise.all(namespaces.map(ns => Promise.all([
    count('namespace=' + encodeURIComponent(ns)),
    count('namespace=' + encodeURIComponent(ns) + '&status=pending'),
  ])));
  const [queues, total] = await Promise.all([queueDepths(), count('')]);
  if (gen !== generation) return;
  render(
    h('h1', {}, 'Overview'),
    h('p', { class: 'muted' }, total + ' tasks in total'),
    h('h2', {}, 'Tasks by state'),
    h('div', { class: 'cards', id: 'state-cards' }, TASK_STATES.filter((st, i) => states[i] !== null).map((st) => {
      const n = states[TASK_STATES.indexOf(st)];
      return h('a', { class: 'card st-' + st, href: '#/tasks?status=' + st, 'data-state': st },
        h('span', { class: 'num' }, n), h('span', {}, st.replace(/_/g, ' ')));
    })),
    h('h2', {}, 'Tasks by namespace'),
    namespaces.length === 0 ? h('p', { class: 'muted' }, 'No templates registered.') :
      h('div', { class: 'scroll' }, h('table', { id: 'ns-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Namespace'), h('th', { class: 'num' }, 'Tasks'), h('th', { class: 'num' }, 'Not complete'))),
        h('tbody', {}, namespaces.map((ns, i) => h('tr', {},
          h('td', {}, h('a', { href: '#/tasks?namespace=' + encodeURIComponent(ns) }, ns)),
          h('td', { class: 'num' }, nsCounts[i][0]),
          h('td', { class: 'num' }, h('a', { href: '#/tasks?namespace=' + encodeURIComponent(ns) + '&status=pending' }, nsCounts[i][1]))))))),
    queues.length ? [h('h2', {}, 'Orchestration queues'),
      h('div', { class: 'scroll' }, h('table', { id: 'queue-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Queue'), h('th', { class: 'num' }, 'Depth'))),
        h('tbody', {}, queues.map(([q, n]) => h('tr', {}, h('td', {}, q), h('td', { class: 'num' }, n))))))] : [],
  );
}

// queueDepths reads the orchestration queue depths from the public /metrics endpoint.
async function queueDepths() {
  try {
    const resp = await fetch('/metrics', { headers: { Accept: 'text/plain' } });
    if (!resp.ok) return [];
    const out = [];
    for (const line of (await resp.text()).split('\n')) {
      const m = /^tasker_orchestrator_queue_depth\{queue="([^"]+)"\} (\S+)$/.exec(line);
      if (m) out.push([m[1], Number(m[2])]);
    }
    return out;
  } catch { return []; }
}

async function taskList(gen, params) {
  const page = Math.max(1, parseInt(params.get('page') || '1', 10) || 1);
  const ns = params.get('namespace') || '';
  const st = params.get('status') || '';
  const perPage = Math.min(100, Math.max(1, parseInt(params.get('per_page') || '25', 10) || 25));
  const q = new URLSearchParams({ page: String(page), per_page: String(perPage) });
  if (ns) q.set('namespace', ns);
  if (st) q.set('status', st);
  const data = await api('GET', '/v1/tasks?' + q);
  if (gen !== generation) return;
  const link = p => {
    const l = new URLSearchParams(params);
    l.set('page', String(p));
    return '#/tasks?' + l;
  };
  const form = h('form', { class: 'filters', id: 'filters', onsubmit: e => {
    e.preventDefault();
    const f = new URLSearchParams();
    const fns = form.elements.namespace.value.trim();
    if (fns) f.set('namespace', fns);
    if (form.elements.status.value) f.set('status', form.elements.status.value);
    location.hash = '#/tasks?' + f;
  } },
  h('label', {}, 'Namespace ', h('input', { name: 'namespace', value: ns, placeholder: 'any' })),
  h('label', {}, 'State ', h('select', { name: 'status' },
    h('option', { value: '' }, 'any'),
    h('option', { value: 'pending', selected: st === 'pending' }, 'not complete'),
    TASK_STATES.filter(x => x !== 'pending').map(x => h('option', { value: x, selected: st === x }, x)))),
  h('button', { type: 'submit' }, 'Filter'));
  const pg = data.pagination;
  render(
    h('h1', {}, 'Tasks'),
    form,
    h('div', { class: 'scroll' }, h('table', { id: 'task-table' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Task'), h('th', {}, 'Namespace'), h('th', {}, 'State'),
        h('th', { class: 'num' }, 'Steps'), h('th', { class: 'wide' }, 'Created'))),
      h('tbody', {}, data.tasks.length === 0 ? h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'No tasks.')) :
        data.tasks.map(t => h('tr', { 'data-task': t.task_uuid },
          h('td', {}, h('a', { href: '#/tasks/' + t.task_uuid }, t.name), h('div', { class: 'muted small' }, shortID(t.task_uuid))),
          h('td', {}, t.namespace),
          h('td', {}, badge(t.status)),
          h('td', { class: 'num' }, t.completed_steps + '/' + t.total_steps),
          h('td', { class: 'wide' }, when(t.created_at))))))),
    h('nav', { class: 'pager' },
      pg.has_previous ? h('a', { href: link(pg.page - 1), id: 'prev' }, '← Previous') : h('span', {}),
      h('span', { class: 'muted' }, 'Page ' + pg.page + ' of ' + Math.max(1, pg.total_pages) + ' (' + pg.total_count + ' tasks)'),
      pg.has_next ? h('a', { href: link(pg.page + 1), id: 'next' }, 'Next →') : h('span', {})),
  );
}

// ---- DAG layout ----

// layoutDAG places nodes in layers by longest path from a root, then orders each layer by the
// mean position of its neighbours in the layer above (down sweeps) and below (up sweeps).
function layoutDAG(ids, edges) {
  const parents = new Map(ids.map(id => [id, []]));
  const children = new Map(ids.map(id => [id, []]));
  for (const [from, to] of edges) {
    if (!parents.has(from) || !parents.has(to)) continue;
    parents.get(to).push(from);
    children.get(from).push(to);
  }
  const layer = new Map();
  const visiting = new Set();
  const depth = id => {
    if (layer.has(id)) return layer.get(id);
    if (visiting.has(id)) return 0; // a cycle cannot happen in a workflow; do not loop on one
    visiting.add(id);
    const d = parents.get(id).reduce((m, p) => Math.max(m, depth(p) + 1), 0);
    visiting.delete(id);
    layer.set(id, d);
    return d;
  };
  ids.forEach(depth);
  const layers = [];
  for (const id of ids) (layers[layer.get(id)] ||= []).push(id);
  const pos = new Map();
  const index = () => layers.forEach(l => l.forEach((id, i) => pos.set(id, i)));
  index();
  const mean = (id, nbrs) => {
    const ps = nbrs.get(id).map(n => pos.get(n));
    return ps.length ? ps.reduce((a, b) => a + b, 0) / ps.length : pos.get(id);
  };
  for (let round = 0; round < 4; round++) {
    for (let i = 1; i < layers.length; i++) {
      layers[i].sort((a, b) => mean(a, parents) - mean(b, parents));
      index();
    }
    for (let i = layers.length - 2; i >= 0; i--) {
      layers[i].sort((a, b) => mean(a, children) - mean(b, children));
      index();
    }
  }
  return { layers, layer, pos, parents };
}

// dagEdges returns [parent uuid, child uuid] pairs from the template's dependencies (template
// step name → names it depends on). A batch worker, named <worker template>_<batch id>, has the
// dependencies of its worker template, and a dependency on the worker template means one on
// every worker made from it, as the orchestrator creates their edges.
function dagEdges(steps, deps) {
  const templateOf = name => {
    if (deps.has(name)) return name;
    let best = null;
    for (const t of deps.keys()) if (name.startsWith(t + '_') && (!best || t.length > best.length)) best = t;
    return best;
  };
  const byName = new Map(steps.map(st => [st.name, st]));
  const instances = new Map();
  for (const st of steps) {
    const t = templateOf(st.name);
    if (t !== null && t !== st.name) (instances.get(t) || instances.set(t, []).get(t)).push(st);
  }
  const edges = [];
  for (const st of steps) {
    for (const dep of deps.get(templateOf(st.name)) || []) {
      const parents = byName.has(dep) ? [byName.get(dep)] : (instances.get(dep) || []);
      for (const p of parents) edges.push([p.workflow_step_uuid, st.workflow_step_uuid]);
    }
  }
  return edges;
}

const NODE_W = 168, NODE_H = 52, GAP_X = 28, GAP_Y = 46, PAD = 12;

// drawDAG renders steps (from GET /v1/tasks/{uuid}) as an SVG, edges from the template's step
// dependencies (GET /v1/tasks/{uuid}/summary).
function drawDAG(task, deps) {
  const ids = task.steps.map(st => st.workflow_step_uuid);
  const edges = dagEdges(task.steps, deps);
  const { layers, layer, pos } = layoutDAG(ids, edges);
  const widest = Math.max(1, ...layers.map(l => l.length));
  const width = PAD * 2 + widest * NODE_W + (widest - 1) * GAP_X;
  const height = PAD * 2 + layers.length * NODE_H + Math.max(0, layers.length - 1) * GAP_Y;
  const xy = id => {
    const l = layers[layer.get(id)];
    const rowW = l.length * NODE_W + (l.length - 1) * GAP_X;
    return [(width - rowW) / 2 + pos.get(id) * (NODE_W + GAP_X), PAD + layer.get(id) * (NODE_H + GAP_Y)];
  };
  const svg = s('svg', { id: 'dag', viewBox: `0 0 ${width} ${height}`, width: String(width), role: 'img',
    'aria-label': 'Workflow of ' + task.name, 'data-edges': String(edges.length) },
  s('defs', {}, s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '10', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' },
    s('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));
  for (const [from, to] of edges) {
    const [x1, y1] = xy(from), [x2, y2] = xy(to);
    const ax = x1 + NODE_W / 2, ay = y1 + NODE_H, bx = x2 + NODE_W / 2, by = y2;
    const my = (ay + by) / 2;
    svg.append(s('path', { class: 'edge', d: `M ${ax} ${ay} C ${ax} ${my}, ${bx} ${my}, ${bx} ${by}`, 'marker-end': 'url(#arrow)' }));
  }
  for (const st of task.steps) {
    const [x, y] = xy(st.workflow_step_uuid);
    const label = st.name.length > 22 ? st.name.slice(0, 21) + '…' : st.name;
    const g = s('a', { href: '#/tasks/' + task.task_uuid + '/steps/' + st.workflow_step_uuid },
      s('g', { class: 'node st-' + st.current_state, 'data-step-name': st.name, 'data-state': st.current_state,
        'data-attempts': String(st.attempts), transform: `translate(${x},${y})` },
      s('title', {}, `${st.name}: ${st.current_state}, attempts ${st.attempts}/${st.max_attempts}`),
      s('rect', { width: String(NODE_W), height: String(NODE_H), rx: '8' }),
      s('text', { x: String(NODE_W / 2), y: '21', class: 'name' }, label),
      s('text', { x: String(NODE_W / 2), y: '39', class: 'meta' }, `${st.current_state.replace(/_/g, ' ')} · ${st.attempts}/${st.max_attempts}`)));
    svg.append(g);
  }
  return svg;
}

// ---- task page ----

function stepActions(taskID, st, reload) {
  const act = async (title, text, body, withResult) => {
    const answer = await confirmAction(title, text, withResult);
    if (!answer) return;
    const by = 'console';
    const payload = { ...body, reason: answer.reason };
    if (body.action_type === 'reset_for_retry') payload.reset_by = by;
    if (body.action_type === 'resolve_manually') payload.resolved_by = by;
    if (body.action_type === 'complete_manually') {
      let result;
      try { result = JSON.parse(answer.result || 'null'); } catch (e) { banner('Result is not JSON: ' + e.message); return; }
      payload.completed_by = by;
      payload.completion_data = { result };
    }
    try {
      await api('PATCH', `/v1/tasks/${taskID}/workflow_steps/${st.workflow_step_uuid || st.step_uuid}`, payload);
      banner('');
    } catch (e) { banner(e.message); }
    reload();
  };
  const name = st.name;
  const buttons = [];
  if (st.current_state === 'error') {
    buttons.push(h('button', { type: 'button', class: 'small', 'data-action': 'reset_for_retry', onclick: () =>
      act('Retry step', `Reset ${name} to pending with attempts 0?`, { action_type: 'reset_for_retry' }) }, 'Retry'));
  }
  if (!FINAL_STEP.has(st.current_state)) {
    buttons.push(h('button', { type: 'button', class: 'small secondary', 'data-action': 'resolve_manually', onclick: () =>
      act('Resolve step manually', `Mark ${name} as resolved manually? Dependent steps will run.`, { action_type: 'resolve_manually' }) }, 'Resolve'));
    buttons.push(h('button', { type: 'button', class: 'small secondary', 'data-action': 'complete_manually', onclick: () =>
      act('Complete step manually', `Complete ${name} with this result? Dependent steps read it.`, { action_type: 'complete_manually' }, true) }, 'Complete'));
  }
  return buttons;
}

async function taskPage(gen, id) {
  let deps = null, depsFor = -1;
  const load = async () => {
    if (gen !== generation) return;
    let task;
    try {
      task = await api('GET', '/v1/tasks/' + id);
      if (depsFor !== task.steps.length) {
        const sum = await api('GET', '/v1/tasks/' + id + '/summary');
        deps = new Map(sum.template.steps.map(t => [t.name, t.dependencies]));
        depsFor = task.steps.length;
      }
    } catch (e) {
      if (gen === generation) showError(e);
      return;
    }
    if (gen !== generation) return;
    const final = FINAL_TASK.has(task.status);
    const cancel = final ? null : h('button', { type: 'button', id: 'cancel-task', class: 'danger', onclick: async () => {
      const answer = await confirmAction('Cancel task', `Cancel ${task.name} and its unfinished steps?`, false);
      if (!answer) return;
      try { await api('DELETE', '/v1/tasks/' + id); banner(''); } catch (e) { banner(e.message); }
      load();
    } }, 'Cancel task');
    render(
      h('div', { class: 'title-row' },
        h('h1', {}, task.name, ' ', h('span', { class: 'muted small' }, task.namespace + ' ' + task.version)),
        cancel),
      h('p', { id: 'task-status' }, badge(task.status), ' ',
        h('span', { class: 'muted' }, `${task.completed_steps}/${task.total_steps} steps complete · ${task.execution_status.replace(/_/g, ' ')} · ${final ? 'final' : 'live'}`)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Task'), h('dd', { class: 'mono' }, task.task_uuid),
        h('dt', {}, 'Created'), h('dd', {}, when(task.created_at)),
        h('dt', {}, 'Completed'), h('dd', {}, when(task.completed_at)),
        h('dt', {}, 'Initiator'), h('dd', {}, task.initiator + ' / ' + task.source_system)),
      h('div', { class: 'dag-wrap' }, drawDAG(task, deps)),
      h('p', { class: 'muted small' }, 'Each node: step, state · attempts/max attempts. Select a node for its results and audit.'),
      h('h2', {}, 'Steps'),
      h('div', { class: 'scroll' }, h('table', { id: 'step-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Step'), h('th', {}, 'State'), h('th', { class: 'num' }, 'Attempts'), h('th', {}, 'Actions'))),
        h('tbody', {}, task.steps.map(st => h('tr', { 'data-step-name': st.name },
          h('td', {}, h('a', { href: '#/tasks/' + id + '/steps/' + st.workflow_step_uuid }, st.name)),
          h('td', {}, badge(st.current_state)),
          h('td', { class: 'num' }, st.attempts + '/' + st.max_attempts),
          h('td', { class: 'actions' }, stepActions(id, st, load))))))),
      h('h2', {}, 'Context'),
      h('pre', {}, JSON.stringify(task.context, null, 2)),
    );
    if (!final) setTimeout(load, POLL_MS);
  };
  await load();
}

// ---- step page ----

async function stepPage(gen, taskID, stepID) {
  const load = async () => {
    if (gen !== generation) return;
    let st, audit;
    try {
      [st, audit] = await Promise.all([
        api('GET', `/v1/tasks/${taskID}/workflow_steps/${stepID}`),
        api('GET', `/v1/tasks/${taskID}/workflow_steps/${stepID}/audit`),
      ]);
    } catch (e) {
      if (gen === generation) showError(e);
      return;
    }
    if (gen !== generation) return;
    const res = st.results;
    const err = res && typeof res === 'object' ? res.error : null;
    render(
      h('p', {}, h('a', { href: '#/tasks/' + taskID }, '← task')),
      h('div', { class: 'title-row' }, h('h1', {}, st.name), h('div', { class: 'actions' }, stepActions(taskID, st, load))),
      h('p', { id: 'step-status' }, badge(st.current_state)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Step'), h('dd', { class: 'mono' }, st.step_uuid),
        h('dt', {}, 'Attempts'), h('dd', { id: 'step-attempts' }, st.attempts + ' of ' + st.max_attempts),
        h('dt', {}, 'Parents'), h('dd', {}, st.completed_parents + '/' + st.total_parents + ' complete'),
        h('dt', {}, 'Last attempt'), h('dd', {}, when(st.last_attempted_at)),
        h('dt', {}, 'Last failure'), h('dd', {}, when(st.last_failure_at)),
        h('dt', {}, 'Next retry'), h('dd', {}, when(st.next_retry_at)),
        h('dt', {}, 'Completed'), h('dd', {}, when(st.completed_at))),
      err ? [h('h2', {}, 'Error'), h('pre', { class: 'error-box', id: 'step-error' }, JSON.stringify(err, null, 2))] : [],
      h('h2', {}, 'Results'),
      h('pre', { id: 'step-results' }, res === null || res === undefined ? '—' : JSON.stringify(res && res.result !== undefined ? res.result : res, null, 2)),
      h('h2', {}, 'Audit'),
      h('div', { class: 'scroll' }, h('table', { id: 'audit-table' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Recorded'), h('th', {}, 'Transition'), h('th', {}, 'Success'),
          h('th', { class: 'num' }, 'ms'), h('th', { class: 'wide' }, 'Worker'))),
        h('tbody', {}, audit.length === 0 ? h('tr', {}, h('td', { colspan: '5', class: 'muted' }, 'No audit rows.')) :
          audit.map(a => h('tr', {},
            h('td', {}, when(a.recorded_at)),
            h('td', {}, (a.from_state || '∅') + ' → ' + a.to_state),
            h('td', {}, a.success ? 'yes' : 'no'),
            h('td', { class: 'num' }, a.execution_time_ms ?? ''),
            h('td', { class: 'wide mono small' }, a.worker_uuid ? shortID(a.worker_uuid) : '')))))),
    );
    if (!FINAL_STEP.has(st.current_state) && st.current_state !== 'error') setTimeout(load, POLL_MS);
  };
  await load();
}

// ---- router ----

async function route() {
  const gen = ++generation;
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, query] = raw.split('?');
  const parts = path.split('/').filter(Boolean);
  document.querySelectorAll('[data-nav]').forEach(a =>
    a.classList.toggle('active', a.dataset.nav === (parts[0] === 'tasks' ? 'tasks' : 'overview')));
  try {
    if (parts.length === 0) await overview(gen);
    else if (parts[0] === 'tasks' && parts.length === 1) await taskList(gen, new URLSearchParams(query || ''));
    else if (parts[0] === 'tasks' && parts.length === 2) await taskPage(gen, parts[1]);
    else if (parts[0] === 'tasks' && parts.length === 4 && parts[2] === 'steps') await stepPage(gen, parts[1], parts[3]);
    else render(h('p', {}, 'Unknown page. ', h('a', { href: '#/' }, 'Overview')));
  } catch (e) {
    if (gen === generation) showError(e);
  }
}

function setupAuth() {
  const form = document.getElementById('auth-form');
  const input = document.getElementById('auth-input');
  document.getElementById('auth-toggle').addEventListener('click', () => { form.hidden = !form.hidden; });
  form.addEventListener('submit', e => {
    e.preventDefault();
    if (input.value.trim()) sessionStorage.setItem(CRED_KEY, input.value.trim());
    input.value = '';
    form.hidden = true;
    banner('');
    route();
  });
  document.getElementById('auth-clear').addEventListener('click', () => {
    sessionStorage.removeItem(CRED_KEY);
    input.value = '';
    route();
  });
}

setupAuth();
window.addEventListener('hashchange', route);
route();
