// tune's dashboard: polls /api/studies/NAME?since=VERSION every second (the server sends the
// trials changed since), keeps the study in `model` and redraws the charts from it. Opened from
// `tune report`'s dashboard.html, it draws the embedded snapshot instead and polls nothing.
'use strict';
(function () {
  const COLOURS = { complete: '#2f6fd0', running: '#2ca02c', paused: '#9467bd', pruned: '#f08c2e', failed: '#c42525', infeasible: '#999999' };
  const STATES = Object.keys(COLOURS);
  const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'];
  const embedded = window.TUNE_EMBEDDED || null;
  const token = new URLSearchParams(location.search).get('token');
  const model = {
    study: null, version: 0, trials: new Map(), logParams: new Set(), varying: [], importance: [],
    retrains: [], selected: null, hidden: new Set(), logAxes: true, historyX: 'trial', confusionOf: null,
  };
  const charts = {};
  // For tests and the curious: the state, the chart instances, when this page was loaded.
  window.tuneDashboard = { model, charts, loadedAt: Date.now(), renders: 0, lastRenderMs: 0 };

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]);
  const fmt = (x, d = 4) => (x == null ? '–' : Number(x).toFixed(d));
  const when = (secs) => (secs == null ? '–' : new Date(secs * 1000).toLocaleString());

  function api(path) {
    const headers = token ? { Authorization: 'Bearer ' + token } : {};
    return fetch(path, { headers, cache: 'no-store' }).then((r) => {
      if (!r.ok) return r.text().then((t) => { throw new Error(r.status + ': ' + t.trim()); });
      return r.json();
    });
  }

  // ---- the model -------------------------------------------------------------------------
  // Folds an update into the model and says what it changed, so that only the charts that
  // show it are drawn again (at 10,000 trials a full redraw costs far more than one chart):
  // `scores` (a trial's state, best val_acc or size, or the varying parameters), `epochs` (a
  // trial's epochs or finish), `importance`, and whether the selected trial changed. Null when
  // nothing did.
  function merge(update) {
    model.version = update.version;
    const dirty = { scores: false, epochs: false, importance: false, selected: false };
    for (const t of update.trials) {
      const old = model.trials.get(t.n);
      if (!old || old.state !== t.state || old.best !== t.best || old.size !== t.size) dirty.scores = true;
      if (!old || old.val.length !== t.val.length || old.finished !== t.finished || old.state !== t.state) dirty.epochs = true;
      if (t.n === model.selected) dirty.selected = true;
      model.trials.set(t.n, t);
    }
    model.logParams = new Set(update.log_params);
    model.objectives = update.objectives || [];
    if (!update.trials.length) return null;
    if (JSON.stringify(update.varying) !== JSON.stringify(model.varying)) dirty.scores = true;
    if (JSON.stringify(update.importance) !== JSON.stringify(model.importance)) dirty.importance = true;
    model.varying = update.varying;
    model.importance = update.importance;
    return dirty;
  }

  const shown = () => [...model.trials.values()].filter((t) => !model.hidden.has(t.state));
  const lastTime = (t) => t.finished ?? (t.at.length ? t.at[t.at.length - 1] : null) ?? t.created;

  // 0.00030000000000000003 reads as 0.0003: six significant digits are more than any space needs.
  const value = (v) => (typeof v === 'number' && !Number.isInteger(v) ? String(Number(v.toPrecision(6))) : String(v));

  function paramsHtml(t) {
    const keys = Object.keys(t.params).sort();
    return '<div class="params">' + keys.map((k) => esc(k) + ' = <b>' + esc(value(t.params[k])) + '</b>').join('<br>') + '</div>';
  }

  function trialTip(n) {
    const t = model.trials.get(n);
    if (!t) return '';
    let head = '<b>trial ' + n + '</b> · ' + t.state;
    if (t.best != null) head += ' · best val_acc ' + fmt(t.best);
    if (t.size != null) head += ' · ' + t.size.toLocaleString() + ' parameters';
    head += ' · ' + t.val.length + ' epochs';
    if (t.parent != null) head += ' · forked from trial ' + t.parent;
    if (t.reason) head += '<br><i>' + esc(t.reason) + '</i>';
    return head + paramsHtml(t);
  }

  function tooltip(extra) {
    return Object.assign({ trigger: 'item', className: 'tune-tooltip', confine: true, enterable: false, transitionDuration: 0 }, extra);
  }

  function chart(id) {
    if (!charts[id]) {
      charts[id] = echarts.init($(id), null, { renderer: 'canvas' });
      charts[id].on('click', (p) => {
        const n = trialOf(p);
        if (n != null) select(n);
      });
    }
    return charts[id];
  }

  // The trial behind a clicked or hovered mark: value[2] in the cartesian charts, the name elsewhere.
  function trialOf(p) {
    if (p.seriesId === 'retrains') return null;
    if (Array.isArray(p.value) && p.value.length > 2 && typeof p.value[2] === 'number') return p.value[2];
    if (p.data && p.data.trial != null) return p.data.trial;
    const n = Number(p.name);
    return Number.isInteger(n) && model.trials.has(n) ? n : null;
  }

  // ---- charts ----------------------------------------------------------------------------
  function drawHistory(trials) {
    const byTime = model.historyX === 'time';
    const x = (t) => (byTime ? lastTime(t) * 1000 : t.n);
    const trained = trials.filter((t) => t.best != null && (!byTime || lastTime(t) != null));
    const series = STATES.filter((s) => s !== 'infeasible').map((s) => ({
      id: 'history-' + s, name: s, type: 'scatter', symbolSize: 7, itemStyle: { color: COLOURS[s] },
      large: trained.length > 5000,
      data: trained.filter((t) => t.state === s).map((t) => [x(t), t.best, t.n]),
    }));
    // As the samplers rank: finished trials that trained (a failed run's epochs count for nothing).
    const ordered = trained.filter((t) => t.state === 'complete' || t.state === 'pruned').sort((a, b) => x(a) - x(b));
    let best = -Infinity;
    const front = ordered.map((t) => { best = Math.max(best, t.best); return [x(t), best]; });
    series.push({ id: 'best-so-far', name: 'best so far', type: 'line', step: 'end', symbol: 'none', silent: true, lineStyle: { color: '#222', width: 1.5 }, data: front });
    chart('history').setOption({
      animation: false,
      legend: { top: 0 },
      grid: { left: 55, right: 20, top: 35, bottom: 40 },
      tooltip: tooltip({ formatter: (p) => trialTip(p.value[2]) }),
      xAxis: byTime ? { type: 'time', name: 'finished' } : { type: 'value', name: 'trial', nameLocation: 'middle', nameGap: 25, minInterval: 1 },
      yAxis: { type: 'value', name: 'best val_acc', scale: true },
      dataZoom: [{ type: 'inside', yAxisIndex: 0 }],
      series,
    }, { replaceMerge: ['series', 'xAxis'] });
  }

  function drawCurves(trials) {
    const series = [];
    const gap = [NaN, NaN, null];
    for (const s of STATES.filter((s) => s !== 'infeasible')) {
      const data = [];
      for (const t of trials) {
        if (t.state !== s || !t.val.length) continue;
        t.val.forEach((v, i) => data.push([i + 1, v, t.n]));
        data.push(gap);
      }
      series.push({
        id: 'curves-' + s, name: s, type: 'line', data, symbol: 'circle', symbolSize: 3, showSymbol: data.length < 4000,
        connectNulls: false, lineStyle: { width: 1, opacity: 0.55, color: COLOURS[s] }, itemStyle: { color: COLOURS[s] },
        emphasis: { disabled: true }, large: true,
      });
    }
    const stops = trials.filter((t) => t.state === 'pruned' && t.val.length).map((t) => [t.val.length, t.val[t.val.length - 1], t.n]);
    series.push({ id: 'pruned-at', name: 'pruned here', type: 'scatter', symbol: 'triangle', symbolRotate: 180, symbolSize: 9, itemStyle: { color: COLOURS.pruned }, data: stops });
    const sel = model.selected != null ? model.trials.get(model.selected) : null;
    series.push({
      id: 'selected', name: 'selected', type: 'line', symbolSize: 6, z: 10, lineStyle: { width: 3, color: '#111' }, itemStyle: { color: '#111' },
      data: sel && !model.hidden.has(sel.state) ? sel.val.map((v, i) => [i + 1, v, sel.n]) : [],
    });
    chart('curves').setOption({
      animation: false,
      legend: { top: 0, data: STATES.filter((s) => s !== 'infeasible').concat(['pruned here']) },
      grid: { left: 55, right: 20, top: 35, bottom: 40 },
      tooltip: tooltip({ formatter: (p) => (p.value && p.value[2] != null ? 'epoch ' + p.value[0] + ': val_acc ' + fmt(p.value[1]) + '<br>' + trialTip(p.value[2]) : '') }),
      xAxis: { type: 'value', name: 'epoch', nameLocation: 'middle', nameGap: 25, minInterval: 1 },
      yAxis: { type: 'value', name: 'val_acc', scale: true },
      dataZoom: [{ type: 'inside', yAxisIndex: 0 }],
      series,
    }, { replaceMerge: ['series'] });
  }

  function drawParallel(trials) {
    const trained = trials.filter((t) => t.best != null);
    const keys = model.varying.filter((k) => trained.some((t) => k in t.params));
    const axes = keys.map((k, i) => {
      const values = trained.map((t) => t.params[k]).filter((v) => v !== undefined);
      const numeric = values.every((v) => typeof v === 'number');
      const log = model.logAxes && model.logParams.has(k) && numeric && values.every((v) => v > 0);
      const distinct = [...new Set(values)];
      // A number with a handful of values (a choice, a layer flag) reads best as its values.
      if (numeric && (log || distinct.length > 6)) return { dim: i, name: k, type: log ? 'log' : 'value', scale: true, nameLog: log };
      const cats = numeric ? distinct.sort((a, b) => a - b).map(String) : distinct.map(String).sort();
      if (trained.some((t) => t.params[k] === undefined)) cats.push('—');
      return { dim: i, name: k, type: 'category', data: cats };
    });
    axes.push({ dim: keys.length, name: 'best val_acc', type: 'value', scale: true, nameTextStyle: { fontWeight: 'bold' } });
    const data = trained.map((t) => ({
      name: String(t.n), trial: t.n,
      value: keys.map((k, i) => { const v = t.params[k]; return v === undefined ? (axes[i].type === 'category' ? '—' : NaN) : (axes[i].type === 'category' ? String(v) : v); }).concat([t.best]),
    }));
    const accs = trained.map((t) => t.best);
    chart('parallel').setOption({
      animation: false,
      parallel: { left: 40, right: 130, top: 60, bottom: 60, parallelAxisDefault: { nameLocation: 'end', nameGap: 10, nameRotate: 20, nameTruncate: { maxWidth: 130 }, nameTextStyle: { fontSize: 11, color: '#333' }, axisLabel: { fontSize: 10, color: '#444' }, axisLine: { lineStyle: { color: '#888' } } } },
      // Names alternate above and below the axes, so each has two axes' width to be read in.
      parallelAxis: axes.map((a, i) => Object.assign({}, a, a.nameLog ? { name: a.name + ' (log)' } : {}, i % 2 ? { nameLocation: 'start', nameRotate: -20 } : {})),
      visualMap: { type: 'continuous', dimension: keys.length, min: accs.length ? Math.min(...accs) : 0, max: accs.length ? Math.max(...accs) : 1, right: 0, top: 'middle', itemHeight: 160, calculable: true, precision: 3, inRange: { color: ['#d7e3f4', '#6b9bd8', '#08306b'] }, text: ['val_acc', ''] },
      tooltip: tooltip({ formatter: (p) => trialTip(Number(p.name)) }),
      series: [{ id: 'parallel', type: 'parallel', lineStyle: { width: 1.2, opacity: 0.6 }, emphasis: { lineStyle: { width: 3, opacity: 1 } }, progressive: 2000, data }],
    }, { replaceMerge: ['series', 'parallelAxis'] });
  }

  function drawImportance() {
    const rows = model.importance.slice(0, 15).reverse();
    chart('importance').setOption({
      animation: false,
      grid: { left: 150, right: 30, top: 10, bottom: 30 },
      tooltip: tooltip({ formatter: (p) => esc(p.name) + ': ε² = ' + fmt(p.value, 3) }),
      xAxis: { type: 'value', name: 'share of val_acc variance', nameLocation: 'middle', nameGap: 22, max: (v) => Math.max(0.05, Math.ceil(v.max * 20) / 20) },
      yAxis: { type: 'category', data: rows.map((r) => r[0]), axisLabel: { fontSize: 11 } },
      series: [{ id: 'importance', type: 'bar', data: rows.map((r) => r[1]), itemStyle: { color: '#6b9bd8' } }],
    }, { replaceMerge: ['series'] });
  }

  // The accuracy-versus-size front: ranked trials (complete, pruned) that no network with as
  // few parameters or fewer beats, smallest first. What to deploy under a size budget.
  // What a study weighs against accuracy: its second objective (parameters, FLOPs or
  // latency), parameters when it has none. Each maps to a trial's field and an axis unit.
  const COSTS = {
    params: ['size', 'parameters'], flops: ['flops', 'FLOPs per image'],
    latency_ms: ['latency_ms', 'ms per image, one at a time'], latency_ms_batch100: ['latency_ms_batch100', 'ms per image, batches of 100'],
  };
  const cost = () => COSTS[((model.objectives || []).find((o) => o.metric !== 'val_acc') || { metric: 'params' }).metric] || COSTS.params;
  const sizeKey = () => cost()[0];

  function front(trials) {
    const key = sizeKey();
    const ranked = trials.filter((t) => (t.state === 'complete' || t.state === 'pruned') && t.best != null && t[key] != null);
    ranked.sort((a, b) => a[key] - b[key] || b.best - a.best || a.n - b.n);
    const out = [];
    for (const t of ranked) if (!out.length || t.best > out[out.length - 1].best) out.push(t);
    return out;
  }

  function drawFront(trials) {
    const key = sizeKey();
    const unit = cost()[1];
    const sized = trials.filter((t) => t.best != null && t[key] != null);
    const best = front(trials);
    const onFront = new Set(best.map((t) => t.n));
    const series = STATES.filter((s) => s !== 'infeasible').map((s) => ({
      id: 'size-' + s, name: s, type: 'scatter', symbolSize: 6, itemStyle: { color: COLOURS[s], opacity: 0.7 },
      large: sized.length > 5000, data: sized.filter((t) => t.state === s).map((t) => [t[key], t.best, t.n]),
    }));
    series.push({ id: 'front', name: 'front', type: 'line', step: 'end', symbol: 'circle', symbolSize: 9, z: 5, lineStyle: { color: '#222', width: 1.5 }, itemStyle: { color: '#222' }, data: best.map((t) => [t[key], t.best, t.n]) });
    chart('front').setOption({
      animation: false,
      legend: { top: 0 },
      grid: { left: 55, right: 25, top: 35, bottom: 40 },
      tooltip: tooltip({ formatter: (p) => (onFront.has(p.value[2]) ? '<b>on the front</b> · ' : '') + Number(p.value[0]).toLocaleString() + ' ' + unit + '<br>' + trialTip(p.value[2]) }),
      xAxis: { type: 'log', name: unit, nameLocation: 'middle', nameGap: 25, axisLabel: { formatter: (v) => (key.startsWith('latency') ? v + ' ms' : v >= 1e6 ? v / 1e6 + 'M' : v >= 1e3 ? v / 1e3 + 'k' : v) } },
      yAxis: { type: 'value', name: 'best val_acc', scale: true },
      dataZoom: [{ type: 'inside', yAxisIndex: 0 }],
      series,
    }, { replaceMerge: ['series'] });
  }

  // Lanes: each worker's trials laid greedily into the fewest rows that never overlap (its slots).
  function lanes(trials) {
    const now = Date.now() / 1000;
    // Infeasible networks never ran; a trial still running (or paused) ends now.
    const live = (t) => t.state === 'running' || t.state === 'paused';
    const timed = trials
      .filter((t) => t.created != null && t.state !== 'infeasible')
      .map((t) => ({ t, start: t.created, end: t.finished ?? (live(t) ? now : t.at.length ? t.at[t.at.length - 1] : t.created) }));
    timed.sort((a, b) => a.start - b.start);
    const rows = [];
    const ends = new Map();
    const out = [];
    for (const b of timed) {
      const worker = b.t.worker || 'unknown';
      const slots = ends.get(worker) || [];
      let k = slots.findIndex((e) => e <= b.start);
      if (k < 0) { k = slots.length; slots.push(0); rows.push(worker + ' · slot ' + (k + 1)); }
      slots[k] = Math.max(b.end, b.start);
      ends.set(worker, slots);
      out.push({ b, row: rows.indexOf(worker + ' · slot ' + (k + 1)) });
    }
    return { rows, bars: out };
  }

  function drawTimeline(trials) {
    const { rows, bars } = lanes(trials);
    chart('timeline').setOption({
      animation: false,
      grid: { left: 150, right: 20, top: 10, bottom: 40 },
      tooltip: tooltip({ formatter: (p) => trialTip(p.value[2]) + '<br>' + when(p.value[0] / 1000) + ' → ' + when(p.value[1] / 1000) }),
      xAxis: { type: 'time' },
      yAxis: { type: 'category', data: rows, inverse: true, axisLabel: { fontSize: 10 } },
      dataZoom: [{ type: 'inside', xAxisIndex: 0 }],
      series: [{
        id: 'timeline', type: 'custom', encode: { x: [0, 1], y: 3 },
        data: bars.map(({ b, row }) => ({ value: [b.start * 1000, b.end * 1000, b.t.n, row], itemStyle: { color: COLOURS[b.t.state] } })),
        renderItem: (params, api) => {
          const a = api.coord([api.value(0), api.value(3)]);
          const z = api.coord([api.value(1), api.value(3)]);
          const h = api.size([0, 1])[1] * 0.6;
          return { type: 'rect', shape: { x: a[0], y: a[1] - h / 2, width: Math.max(z[0] - a[0], 2), height: h }, style: api.style() };
        },
      }],
      graphic: bars.length ? [] : [{ type: 'text', left: 'center', top: 'middle', style: { text: 'no timestamps: these trials were recorded before tune kept them', fill: '#888' } }],
    }, { replaceMerge: ['series', 'graphic'] });
  }

  function drawRetrains() {
    const tested = model.retrains;
    const labels = tested.map((s) => 'trial ' + s.trial + ' · seed ' + s.seed);
    chart('retrain-bars').setOption({
      animation: false,
      grid: { left: 55, right: 20, top: 20, bottom: 60 },
      tooltip: tooltip({ formatter: (p) => { const s = tested[p.dataIndex]; return esc(labels[p.dataIndex]) + (s.test_accuracy != null ? ': test accuracy ' + fmt(s.test_accuracy) : s.not_picked ? ': a --top candidate, not picked, never tested' : ': still training') + '<br>best val_acc ' + fmt(Math.max(...s.val)) + ' over ' + s.val.length + ' epochs'; } }),
      xAxis: { type: 'category', data: labels, axisLabel: { rotate: 30, fontSize: 10 } },
      yAxis: { type: 'value', name: 'test accuracy', scale: true },
      series: [{ id: 'retrains', type: 'bar', data: tested.map((s) => s.test_accuracy ?? 0), itemStyle: { color: '#2f6fd0' } }],
      graphic: tested.length ? [] : [{ type: 'text', left: 'center', top: 'middle', style: { text: 'no retrains yet: `tune retrain --best`', fill: '#888' } }],
    }, { replaceMerge: ['series', 'graphic'] });
    const s = tested.find((r) => labels[tested.indexOf(r)] === model.confusionOf) || tested.find((r) => r.confusion);
    const m = s && s.confusion;
    $('confusion-title').textContent = m ? 'trial ' + s.trial + ' · seed ' + s.seed + ' (rows: true class)' : '';
    const cells = [];
    if (m) m.forEach((row, t) => row.forEach((c, p) => cells.push([p, t, c])));
    chart('confusion').setOption({
      animation: false,
      grid: { left: 90, right: 20, top: 10, bottom: 80 },
      tooltip: tooltip({ formatter: (p) => 'true ' + CLASSES[p.value[1]] + ', predicted ' + CLASSES[p.value[0]] + ': ' + p.value[2] }),
      xAxis: { type: 'category', data: CLASSES, name: 'predicted', nameLocation: 'middle', nameGap: 65, axisLabel: { rotate: 40, fontSize: 10 } },
      yAxis: { type: 'category', data: CLASSES, inverse: true, axisLabel: { fontSize: 10 } },
      visualMap: { show: false, min: 0, max: cells.length ? Math.max(...cells.map((c) => c[2])) : 1, inRange: { color: ['#ffffff', '#08306b'] } },
      series: [{ id: 'confusion', type: 'heatmap', data: cells, label: { show: true, fontSize: 9 } }],
      graphic: m ? [] : [{ type: 'text', left: 'center', top: 'middle', style: { text: 'no tested retrain yet', fill: '#888' } }],
    }, { replaceMerge: ['series', 'graphic'] });
  }

  function drawDetail() {
    const t = model.selected != null ? model.trials.get(model.selected) : null;
    if (!t) return;
    const rows = [
      ['trial', t.n], ['state', t.state + (t.reason ? ' — ' + t.reason : '')], ['best val_acc', fmt(t.best)], ['epochs', t.val.length],
      ['val_acc by epoch', t.val.map((v) => fmt(v, 3)).join(' ')], ['parameters', t.size == null ? '–' : t.size.toLocaleString()],
      ['forward FLOPs per image', t.flops == null ? '–' : t.flops.toLocaleString()],
      ['inference ms per image (alone · batch 100)', t.latency_ms == null ? '–' : fmt(t.latency_ms, 3) + ' · ' + fmt(t.latency_ms_batch100, 3)], ['worker', t.worker || '–'], ['created', when(t.created)], ['finished', when(t.finished)],
    ];
    if (t.parent != null) rows.push(['forked from', 'trial ' + t.parent]);
    if (t.retry_of != null) rows.push(['re-run of', 'trial ' + t.retry_of]);
    for (const k of Object.keys(t.params).sort()) rows.push([k, value(t.params[k])]);
    $('detail').innerHTML = '<table>' + rows.map((r) => '<tr><td>' + esc(r[0]) + '</td><td><b>' + esc(r[1]) + '</b></td></tr>').join('') + '</table>';
  }

  function select(n) {
    model.selected = n;
    drawDetail();
    drawCurves(shown());
  }

  function drawStatus(error) {
    const el = $('status');
    const all = [...model.trials.values()];
    const counts = STATES.map((s) => [s, all.filter((t) => t.state === s).length]).filter((c) => c[1] > 0);
    const epochs = all.reduce((a, t) => a + t.val.length, 0);
    el.dataset.trials = all.length;
    el.dataset.epochs = epochs;
    el.dataset.version = model.version;
    el.dataset.shown = shown().length;
    el.classList.toggle('error', !!error);
    const what = (model.study || '') + ' · ' + all.length + ' trials (' + counts.map((c) => c[1] + ' ' + c[0]).join(', ') + ') · ' + epochs + ' epochs';
    el.textContent = error ? what + ' · ' + error : what + (embedded ? ' · snapshot' : ' · updated ' + new Date().toLocaleTimeString());
  }

  // Draws the charts that `dirty` (from merge) says changed; every chart without it (a first
  // load, a filter or an axis switched).
  function render(dirty) {
    const started = performance.now();
    const all = !dirty;
    const d = dirty || {};
    const trials = shown();
    if (all || d.scores || (d.epochs && model.historyX === 'time')) drawHistory(trials);
    if (all || d.scores || d.epochs) drawCurves(trials);
    if (all || d.scores) drawParallel(trials);
    if (all || d.importance) drawImportance();
    if (all || d.scores) drawFront(trials);
    if (all || d.epochs || d.scores) drawTimeline(trials);
    if (all || d.selected) drawDetail();
    drawStatus();
    window.tuneDashboard.renders += 1;
    window.tuneDashboard.lastRenderMs = performance.now() - started;
  }

  // ---- live updates ----------------------------------------------------------------------
  let timer = null;
  let polls = 0;
  async function poll() {
    const study = model.study;
    try {
      const update = await api('api/studies/' + encodeURIComponent(study) + '?since=' + model.version);
      if (study !== model.study) return;
      const dirty = merge(update);
      if (dirty) render(dirty);
      else drawStatus();
      if (polls++ % 10 === 0) {
        model.retrains = await api('api/studies/' + encodeURIComponent(study) + '/retrains');
        drawRetrains();
      }
    } catch (e) {
      drawStatus(String(e.message || e));
    }
    timer = setTimeout(poll, 1000);
  }

  function open(name) {
    clearTimeout(timer);
    Object.assign(model, { study: name, version: 0, trials: new Map(), selected: null, varying: [], importance: [], retrains: [] });
    polls = 0;
    history.replaceState(null, '', location.pathname + location.search + '#' + encodeURIComponent(name));
    poll();
  }

  function controls() {
    for (const s of STATES) {
      const box = $('filter-' + s);
      if (!box) continue;
      box.addEventListener('change', () => { if (box.checked) model.hidden.delete(s); else model.hidden.add(s); render(); });
    }
    $('log-axes').addEventListener('change', (e) => { model.logAxes = e.target.checked; render(); });
    $('history-x').addEventListener('change', (e) => { model.historyX = e.target.value; render(); });
    chart('retrain-bars').on('click', (p) => { model.confusionOf = p.name; drawRetrains(); });
    window.addEventListener('resize', () => Object.values(charts).forEach((c) => c.resize()));
  }

  async function start() {
    controls();
    if (embedded) {
      model.study = embedded.update.name;
      $('study').replaceChildren(new Option(model.study, model.study));
      merge(embedded.update);
      model.retrains = embedded.retrains;
      render(null);
      drawRetrains();
      return;
    }
    try {
      const list = await api('api/studies');
      const picker = $('study');
      picker.replaceChildren(...list.studies.map((s) => new Option(s.name + ' (' + s.trials + ' trials)', s.name)));
      picker.addEventListener('change', () => open(picker.value));
      const wanted = decodeURIComponent(location.hash.slice(1));
      const first = list.studies.find((s) => s.name === wanted) || list.studies[0];
      if (!first) { $('status').textContent = 'no study in ' + list.location + ' yet'; return; }
      picker.value = first.name;
      open(first.name);
    } catch (e) {
      drawStatus(String(e.message || e));
    }
  }

  start();
})();
