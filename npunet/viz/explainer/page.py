"""The page itself: one self-contained HTML file (the data as JSON, the CSS and JavaScript below)."""
import html
import json


def render(data):
    """The page for an explainer_data dict."""
    blob = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    return (_TEMPLATE.replace("__TITLE__", html.escape(data["title"]))
            .replace("__DATA__", blob).replace("__JS__", _JS).replace("__CSS__", _CSS))


_CSS = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395d;color:#fff;padding:8px 16px}header h1{font-size:18px;margin:0}
header p{margin:2px 0;font-size:13px;opacity:.9}
nav{display:flex;gap:4px;padding:6px 16px;background:#e8ecf3;position:sticky;top:0;z-index:2}
nav button{border:1px solid #99a;background:#fff;padding:4px 12px;cursor:pointer;border-radius:3px}
nav button.on{background:#23395d;color:#fff}
main{display:flex}#side{width:190px;padding:8px;font-size:12px;max-height:calc(100vh - 110px);overflow:auto}
#side button{display:block;width:100%;text-align:left;border:0;background:none;padding:2px 4px;cursor:pointer}
#side button.on{background:#ffe08a}section{flex:1;padding:8px 16px;display:none}section.on{display:block}
.row{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}.fig{font-size:12px;text-align:left}
.fig img{image-rendering:pixelated;border:1px solid #ccc;display:block;margin:auto}
#svgbox svg{max-width:100%;height:auto}#svgbox svg *{pointer-events:none}
#svgbox [id^="blk-"],#svgbox [id^="blk-"] *{cursor:pointer;pointer-events:all}
#svgbox [id^="blk-"]:hover path{stroke:#f0a;stroke-width:3}#svgbox .sel path{stroke:#f0a!important;stroke-width:4!important}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 5px;text-align:right}
.scale{display:inline-block;width:160px;height:10px;vertical-align:middle;border:1px solid #999}
.mono{font-family:ui-monospace,monospace}.box{position:relative;display:inline-block}
.crop{position:absolute;border:2px dashed #f0a;pointer-events:none}.pick td{cursor:pointer}
.pick td.on{outline:3px solid #f0a}.hl{background:#ffe08a}.note{font-size:12px;color:#555;max-width:900px}
.bar{background:#4a78b5;height:10px;display:inline-block}
"""

_TEMPLATE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>U-Net Explainer: __TITLE__</title>
<style>__CSS__</style></head><body>
<header><h1>U-Net Explainer &mdash; __TITLE__</h1><p id="subtitle"></p></header>
<nav><button data-view="overview" class="on">Overview</button><button data-view="block">Block</button>
<button data-view="op">One operation</button><button data-view="backward">Backward</button>
<button data-view="training" id="nav-training">Training</button></nav>
<main><div id="side"><b>Blocks</b><div id="blocklist"></div></div>
<section id="overview" class="on"></section><section id="block"></section><section id="op"></section>
<section id="backward"></section><section id="training"></section></main>
<script type="application/json" id="data">__DATA__</script>
<script>__JS__</script></body></html>
"""

_JS = r"""
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const f32 = (b64) => { const s = atob(b64), u = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) u[i] = s.charCodeAt(i); return new Float32Array(u.buffer); };
const shp = (s) => "(" + s.join(", ") + ")";
const num = (v) => (Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0)) ? v.toExponential(4) : v.toFixed(6);
const CMAPS = {viridis: "#440154,#3b528b,#21918c,#5ec962,#fde725", RdBu_r: "#053061,#4393c3,#f7f7f7,#d6604d,#67001f",
  magma: "#000004,#51127c,#b73779,#fc8961,#fcfdbf", gray: "#000,#fff"};
function scale(m, label) {
  return `<span class="mono">${num(m.lo)}</span> <span class="scale" style="background:linear-gradient(to right,${CMAPS[m.cmap || "viridis"]})"></span>
  <span class="mono">${num(m.hi)}</span> ${label || ""}`;
}
function fig(m, caption, w, extra) {
  return `<div class="fig"><img src="${m.png}" ${w ? `width="${w}"` : ""} ${extra || ""} alt="${esc(caption)}"><div>${caption}</div></div>`;
}
let cur = D.blocks[0].name, curOp = 0, wm = D.has_wm;
const byName = {}; D.blocks.forEach((b) => byName[b.name] = b);
const level = (b) => b.level;

function show(view) {
  document.querySelectorAll("nav button").forEach((b) => b.classList.toggle("on", b.dataset.view === view));
  document.querySelectorAll("main section").forEach((s) => s.classList.toggle("on", s.id === view));
  render(view);
}
function select(name, view) {
  cur = name; curOp = 0;
  document.querySelectorAll("#blocklist button").forEach((b) => b.classList.toggle("on", b.dataset.block === name));
  document.querySelectorAll('#svgbox [id^="blk-"]').forEach((g) => g.classList.toggle("sel", g.id === "blk-" + name));
  show(view || "block");
}
function current() { return document.querySelector("nav button.on").dataset.view; }

function renderOverview() {
  const I = D.images, e = D.error_counts;
  let h = `<p class="note">${esc(D.note)} Click any box of the figure (or a name on the left) to open that block.
  The figure is drawn from the model itself: boxes are blocks with parameters (width ~ channels, height ~ resolution),
  arrows are the parameter-free steps (pooling, up-sampling, concatenation).</p><div id="svgbox">${D.svg}</div>
  <div class="row">${fig(I.input, "input " + shp(I.in_shape), 192)}${fig(I.prob, "prediction: foreground probability " + shp(I.out_shape), 192)}
  ${fig(I.truth, "ground truth (centre " + shp(I.out_shape) + ")", 192)}
  ${fig(I.error, `error map: <span style="color:#d62728">false positive ${e.fp}</span>, <span style="color:#1f77b4">false negative ${e.fn}</span>, grey: true positive ${e.tp}`, 192)}</div>
  <p class="note">${esc(D.target_note)}</p>`;
  $("overview").innerHTML = h;
  document.querySelectorAll('#svgbox [id^="blk-"]').forEach((g) => {
    const name = g.id.slice(4);
    if (byName[name]) { g.addEventListener("click", () => select(name, "block")); g.classList.toggle("sel", name === cur); }
  });
}

function grid(m, title, id) {
  return `<div class="fig"><img id="${id}" data-block="${esc(cur)}" src="${m.png}" style="max-width:900px;width:${Math.min(900, Math.max(420, m.cols * (m.tile_w + 1)))}px" alt="${esc(title)}">
  <div>${title}: ${m.shown} of ${m.channels} channels${m.factor > 1 ? `, shown ${m.factor}x smaller (block averages)` : ""}; ${scale(m)}</div></div>`;
}

function renderBlock() {
  const b = byName[cur];
  const ins = b.in_shapes.map((s, i) => `${shp(s)} from ${esc(b.in_from[i])}`).join("<br>");
  const chain = [b.in_shapes.length ? b.in_shapes[0][2] : ""].concat(b.leaves.map((l) => l.shape[2]))
    .filter((v, i, a) => i === 0 || v !== a[i - 1]).join(" &rarr; ");
  let h = `<h2>${esc(b.name)} <small>(${esc(b.cls)})</small></h2>
  <table><tr><th>input</th><td>${ins || "&ndash;"}</td></tr><tr><th>output</th><td>${shp(b.out_shape)}</td></tr>
  <tr><th>sizes</th><td>${chain}</td></tr><tr><th>parameters</th><td id="block-params">${b.params.toLocaleString()}</td></tr>
  <tr><th>receptive field</th><td>${b.rf === null ? "the whole image" : b.rf + " x " + b.rf + " input pixels"} (one output pixel = ${b.jump} input pixels)</td></tr>
  <tr><th>layers</th><td style="text-align:left">${b.leaves.map((l) => esc(l.name.split(".").slice(-1)[0] + " " + l.cls + " " + shp(l.shape))).join("<br>")}</td></tr></table>
  <h3>Feature maps of ${esc(b.name)}'s output</h3>${grid(b.features, "every channel", "feature-grid")}`;
  if (b.crop) {
    const c = b.crop, sw = 220, k = sw / c.skip_shape[3];
    h += `<h3>Copy and ${c.skip_shape[2] === c.h ? "concatenate" : "crop"} (${esc(c.layer)})</h3><div class="row">
    <div class="fig"><div class="box"><img src="${c.skip.png}" width="${sw}"><div class="crop" id="crop-rect" style="left:${c.left * k}px;top:${c.top * k}px;width:${c.w * k - 4}px;height:${c.h * k - 4}px"></div></div>
    <div>skip from ${esc(c.skip_from)} ${shp(c.skip_shape)}, channel 0;<br>the dashed box is what is kept (${c.h}x${c.w} from ${c.skip_shape[2]}x${c.skip_shape[3]})</div></div>
    ${fig(c.up, "up-sampled " + shp(c.up_shape) + ", channel 0", Math.round(c.w * k))}</div>
    <p class="note">The two are stacked along the channels: ${c.skip_shape[1]} + ${c.up_shape[1]} channels.</p>`;
  }
  if (b.ops.length) h += `<p><button id="to-op">See one operation of this block &rarr;</button></p>`;
  $("block").innerHTML = h;
  if (b.ops.length) $("to-op").onclick = () => show("op");
}

function pickTable(o, onpick) {
  let h = `<table class="pick" id="pick">`;
  for (let i = 0; i < o.ry; i++) { h += "<tr>";
    for (let j = 0; j < o.rx; j++) h += `<td data-i="${i}" data-j="${j}" title="output (${o.oy + i}, ${o.ox + j})">${o.oy + i},${o.ox + j}</td>`;
    h += "</tr>"; }
  return h + "</table>";
}

function renderOp() {
  const b = byName[cur];
  if (!b.ops.length) { $("op").innerHTML = `<p>${esc(b.name)} has no convolution, pooling or up-sampling of its own; choose another block on the left.</p>`; return; }
  const o = b.ops[Math.min(curOp, b.ops.length - 1)];
  let h = `<h2>One operation of ${esc(b.name)}</h2><p>${b.ops.map((p, i) => `<button class="opbtn${i === curOp ? " hl" : ""}" data-i="${i}">${esc(p.kind)}: ${esc(p.layer)}</button>`).join(" ")}</p>
  <p class="note">Input ${shp(o.in_shape)} &rarr; output ${shp(o.out_shape)}. Pick an output pixel (the region around the largest gradient) and a channel.</p>
  <div class="row"><div>${pickTable(o)}</div><div id="opdetail"></div></div>`;
  $("op").innerHTML = h;
  document.querySelectorAll(".opbtn").forEach((x) => x.onclick = () => { curOp = +x.dataset.i; renderOp(); });
  const st = {i: o.start[0], j: o.start[1], co: 0, ci: -1};
  const W = f32(o.window), K = o.kernel ? f32(o.kernel) : null, B = o.bias ? f32(o.bias) : null, O = f32(o.out);
  function draw() {
    document.querySelectorAll("#pick td").forEach((t) => t.classList.toggle("on", +t.dataset.i === st.i && +t.dataset.j === st.j));
    $("opdetail").innerHTML = OPS[o.kind](o, st, W, K, B, O);
    const sel = $("chan-out"); if (sel) sel.onchange = () => { st.co = +sel.value; draw(); };
    const sci = $("chan-in"); if (sci) sci.onchange = () => { st.ci = +sci.value; draw(); };
  }
  document.querySelectorAll("#pick td").forEach((t) => t.onclick = () => { st.i = +t.dataset.i; st.j = +t.dataset.j; draw(); });
  draw();
}
function mat(rows, cls) {
  return `<table class="mono ${cls || ""}">` + rows.map((r) => "<tr>" + r.map((v) => `<td${v[1] ? ' class="hl"' : ""}>${typeof v[0] === "number" ? num(v[0]) : v[0]}</td>`).join("") + "</tr>").join("") + "</table>";
}
function chanSelect(id, n, v, label) {
  let h = `${label} <select id="${id}">`;
  for (let c = 0; c < n; c++) h += `<option value="${c}"${c === v ? " selected" : ""}>${c}</option>`;
  return h + "</select>";
}
const OPS = {
  conv(o, st, W, K, B, O) {
    const k = o.k, Ci = o.cin, wh = o.ry + k - 1, ww = o.rx + k - 1;
    let sum = 0; const part = [];
    for (let c = 0; c < Ci; c++) { let s = 0;
      for (let u = 0; u < k; u++) for (let v = 0; v < k; v++)
        s += W[(c * wh + st.i + u) * ww + st.j + v] * K[((st.co * Ci + c) * k + u) * k + v];
      part.push(s); sum += s; }
    const total = sum + B[st.co], out = O[(st.co * o.ry + st.i) * o.rx + st.j];
    let ci = st.ci; if (ci < 0) { ci = 0; part.forEach((p, c) => { if (Math.abs(p) > Math.abs(part[ci])) ci = c; }); }
    const win = [], ker = [], prod = [];
    for (let u = 0; u < k; u++) { const a = [], b = [], p = [];
      for (let v = 0; v < k; v++) { const x = W[(ci * wh + st.i + u) * ww + st.j + v], w = K[((st.co * Ci + ci) * k + u) * k + v];
        a.push([x]); b.push([w]); p.push([x * w]); }
      win.push(a); ker.push(b); prod.push(p); }
    const top = part.map((p, c) => [c, p]).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 8);
    return `<h3>${k}x${k} convolution ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3>
    <p>${chanSelect("chan-out", o.cout_shown, st.co, "output channel")} ${o.cout_shown < o.cout ? `(first ${o.cout_shown} of ${o.cout})` : ""}
    ${chanSelect("chan-in", Ci, ci, "input channel shown")}</p>
    <div class="row"><div>input window (channel ${ci})${o.pad ? ", zero padding " + o.pad : ""}${mat(win)}</div><div>kernel [${st.co}, ${ci}]${mat(ker)}</div>
    <div>products${mat(prod)} sum over this channel: <span class="mono">${num(part[ci])}</span></div></div>
    <p>The output sums such products over all ${Ci} input channels (${Ci * k * k} multiplications), then adds the bias.
    Largest channel contributions: ${top.map((t) => `ch ${t[0]}: <span class="mono">${num(t[1])}</span>`).join(", ")}</p>
    <table class="mono"><tr><th>sum of all products</th><td>${sum.toPrecision(9)}</td></tr><tr><th>+ bias</th><td>${B[st.co].toPrecision(9)}</td></tr>
    <tr><th>= sum</th><td id="op-sum">${total.toPrecision(9)}</td></tr><tr><th>the model's output (float32)</th><td id="op-output">${out.toPrecision(9)}</td></tr>
    <tr><th>difference</th><td>${Math.abs(total - out).toExponential(2)}</td></tr></table>
    <p class="note">This is the convolution's own output, before the batch norm and ReLU that follow it in the block.</p>`;
  },
  maxpool(o, st, W, K, B, O) {
    const k = o.k, s = o.s, c = Math.min(Math.max(st.co, 0), o.c_shown - 1), [wh, ww] = o.wh;
    let best = -Infinity, bu = 0, bv = 0; const rows = [];
    for (let u = 0; u < k; u++) for (let v = 0; v < k; v++) {
      const x = W[(c * wh + st.i * s + u) * ww + st.j * s + v]; if (x > best) { best = x; bu = u; bv = v; } }
    for (let u = 0; u < k; u++) { const r = []; for (let v = 0; v < k; v++) r.push([W[(c * wh + st.i * s + u) * ww + st.j * s + v], u === bu && v === bv]); rows.push(r); }
    const out = O[(c * o.ry + st.i) * o.rx + st.j];
    return `<h3>${k}x${k} max pooling ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3><p>${chanSelect("chan-out", o.c_shown, c, "channel")}</p>
    <div class="row"><div>input window: rows ${(o.oy + st.i) * s}&ndash;${(o.oy + st.i) * s + k - 1}, columns ${(o.ox + st.j) * s}&ndash;${(o.ox + st.j) * s + k - 1}${mat(rows)}</div></div>
    <p>The winner (highlighted): input (${(o.oy + st.i) * s + bu}, ${(o.ox + st.j) * s + bv}); in backward only it receives the gradient.</p>
    <table class="mono"><tr><th>max of the window</th><td id="op-sum">${best.toPrecision(9)}</td></tr><tr><th>the model's output</th><td id="op-output">${out.toPrecision(9)}</td></tr></table>`;
  },
  upconv(o, st, W, K, B, O) {
    const k = o.k, Ci = o.cin, Co = o.cout, [wh, ww] = o.wh, iy = Math.floor((o.oy + st.i) / k) - o.oy / k, ix = Math.floor((o.ox + st.j) / k) - o.ox / k;
    const ty = (o.oy + st.i) % k, tx = (o.ox + st.j) % k, co = st.co, ncs = o.cout_shown;
    let sum = 0; const part = [];
    for (let c = 0; c < Ci; c++) { const p = W[(c * wh + iy) * ww + ix] * K[((c * ncs + co) * k + ty) * k + tx]; part.push(p); sum += p; }
    const total = sum + B[co], out = O[(co * o.ry + st.i) * o.rx + st.j];
    const land = []; for (let u = 0; u < k; u++) { const r = []; for (let v = 0; v < k; v++) r.push([`(${(o.oy / k + iy) * k + u}, ${(o.ox / k + ix) * k + v})`, u === ty && v === tx]); land.push(r); }
    const top = part.map((p, c) => [c, p]).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 8);
    return `<h3>${k}x${k} up-convolution ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3><p>${chanSelect("chan-out", ncs, co, "output channel")}</p>
    <p>Each input pixel stamps a ${k}x${k} kernel onto the output (stride ${k}, no overlap). This output pixel comes from input pixel
    (${o.oy / k + iy}, ${o.ox / k + ix}) through kernel tap (${ty}, ${tx}); the kernel lands on:</p>${mat(land)}
    <p>Largest of the ${Ci} products input[c] x W[c, ${co}, ${ty}, ${tx}]: ${top.map((t) => `ch ${t[0]}: <span class="mono">${num(t[1])}</span>`).join(", ")}</p>
    <table class="mono"><tr><th>sum of products</th><td>${sum.toPrecision(9)}</td></tr><tr><th>+ bias</th><td>${B[co].toPrecision(9)}</td></tr>
    <tr><th>= sum</th><td id="op-sum">${total.toPrecision(9)}</td></tr><tr><th>the model's output</th><td id="op-output">${out.toPrecision(9)}</td></tr></table>`;
  },
  bilinear(o, st, W, K, B, O) {
    const c = Math.min(Math.max(st.co, 0), o.c_shown - 1), [wh, ww] = o.wh, Y = o.ys[st.i], X = o.xs[st.j];
    const pts = [[Y[0], X[0], (1 - Y[2]) * (1 - X[2])], [Y[0], X[1], (1 - Y[2]) * X[2]], [Y[1], X[0], Y[2] * (1 - X[2])], [Y[1], X[1], Y[2] * X[2]]];
    let sum = 0; const rows = pts.map((p) => { const v = W[(c * wh + p[0]) * ww + p[1]]; sum += p[2] * v;
      return [[`(${o.wy0 + p[0]}, ${o.wx0 + p[1]})`], [v], [p[2]], [p[2] * v]]; });
    const out = O[(c * o.ry + st.i) * o.rx + st.j];
    return `<h3>Bilinear up-sampling ${esc(o.layer)} at output (${o.oy + st.i}, ${o.ox + st.j})</h3><p>${chanSelect("chan-out", o.c_shown, c, "channel")}
    (align_corners=${o.align_corners})</p><table class="mono"><tr><th>input pixel</th><th>value</th><th>weight</th><th>weight x value</th></tr>
    ${rows.map((r) => "<tr>" + r.map((v) => `<td>${typeof v[0] === "number" ? num(v[0]) : v[0]}</td>`).join("") + "</tr>").join("")}</table>
    <p>The four weights sum to 1: (1 - ${Y[2].toFixed(4)}) and ${Y[2].toFixed(4)} down, (1 - ${X[2].toFixed(4)}) and ${X[2].toFixed(4)} across.</p>
    <table class="mono"><tr><th>= sum</th><td id="op-sum">${sum.toPrecision(9)}</td></tr><tr><th>the model's output</th><td id="op-output">${out.toPrecision(9)}</td></tr></table>`;
  },
};

function renderBackward() {
  const b = byName[cur], key = wm ? "wm" : "plain", I = D.images;
  let h = `<h2>Backward: the gradient reaching ${esc(b.name)}</h2><p class="note">Loss: ${esc(D.loss_name)} = ${D.loss.toFixed(5)}.
  The maps are dL/d(output of the block), from the model's own backward (model.backward).</p>`;
  if (D.has_wm) h += `<p><label><input type="checkbox" id="wm-toggle"${wm ? " checked" : ""}> use the U-Net weight map in the loss
  (Ronneberger et al. 2015, eq. 2: large weights in the gaps between touching cells)</label></p>
  <div class="row">${fig(I.dlogits[key], "|dL/dlogits| per pixel " + (wm ? "with" : "without") + " the weight map", 200, 'id="dlogits-map"')}${fig(I.weight, "weight map", 200)}${fig(I.truth, "ground truth", 200)}</div>`;
  if (b.grad) {
    h += `<div class="row">${fig(b.grad_map[key], `gradient norm over channels of ${esc(b.name)}, ${wm ? "with" : "without"} weight map (total ${num(b.grad_norms[key])})`, 220, 'id="grad-map"')}</div>`;
    h += `<h3>dL/d(${esc(b.name)}) per channel</h3>${grid(b.grad, "gradient" + (D.has_wm ? " (with the weight map)" : ""), "grad-grid")}`;
  } else h += `<p>No gradient was recorded for this block.</p>`;
  if (b.contributions) {
    h += `<h3>${b.contributions.length} contributions sum here</h3><p class="note">${esc(b.name)}'s output feeds ${b.contributions.length} consumers;
    in backward each sends a gradient and the gradient of ${esc(b.name)} is their sum (largest deviation of the sum from the recorded gradient: ${b.contrib_sum_error.toExponential(2)}).</p><div class="row">` +
    b.contributions.map((c) => `<div class="contribution">${fig(c.map, `from ${esc(c.block)} (via ${esc(c.via)}), norm ${num(c.norm)}`, 200)}</div>`).join("") +
    `${fig(b.contrib_sum_map, "= their sum", 200)}</div>`;
  }
  if (b.sent) {
    h += `<h3>Gradients this block sends to its ${b.sent.length} inputs</h3><div class="row">` +
    b.sent.map((s) => `<div class="sent">${fig(s.map, `to ${esc(s.to)} ${shp(s.shape)}, norm ${num(s.norm)}`, 160)}</div>`).join("") + `</div>`;
  }
  h += `<h3>Gradient norm per level (${wm ? "with" : "without"} the weight map)</h3><table id="levels"><tr><th>level</th><th>block</th><th>||dL/d output||</th><th></th></tr>`;
  let mx = 0; Object.values(D.levels).forEach((l) => l.forEach((r) => mx = Math.max(mx, r[1][key] || 0)));
  Object.entries(D.levels).forEach(([lv, l]) => l.forEach((r) => {
    h += `<tr${r[0] === b.name ? ' class="hl"' : ""}><td>${(+lv).toFixed(1)}</td><td style="text-align:left">${esc(r[0])}</td><td class="mono">${num(r[1][key])}</td>
    <td style="text-align:left"><span class="bar" style="width:${Math.round(200 * Math.sqrt((r[1][key] || 0) / (mx || 1)))}px"></span></td></tr>`; }));
  $("backward").innerHTML = h + "</table><p class='note'>Bars: square root of the norm, relative to the largest.</p>";
  const t = $("wm-toggle"); if (t) t.onchange = () => { wm = t.checked; renderBackward(); };
}

let snap = D.snapshots ? D.snapshots.length - 1 : 0;  // the final weights first
function renderTraining() {
  const S = D.snapshots;
  if (!S) { $("training").innerHTML = `<p>This page has one set of weights. A run folder with several checkpoints,
  or <span class="mono">npunet explain --model NAME --epochs-snapshots 1,3,10</span>, adds a slider over epochs here.</p>`; return; }
  const s = S[snap], f = s.features[cur];
  $("training").innerHTML = `<h2>Training</h2><p><input type="range" id="slider" min="0" max="${S.length - 1}" value="${snap}"> <b id="snap-label">${esc(s.label)}</b></p>
  <div class="row">${fig(s.prob, "prediction", 220)}${fig(D.images.truth, "ground truth", 220)}</div>
  ${f ? `<h3>${esc(cur)} (choose another block on the left)</h3>` + grid(f, "features", "snap-grid") : ""}`;
  $("slider").oninput = (e) => { snap = +e.target.value; renderTraining(); };
}

function render(view) {
  ({overview: renderOverview, block: renderBlock, op: renderOp, backward: renderBackward, training: renderTraining})[view]();
}
$("subtitle").textContent = `${D.model}, ${D.params.toLocaleString()} parameters, input ${shp(D.images.in_shape)}. ` + D.note;
$("blocklist").innerHTML = D.blocks.map((b) => `<button data-block="${esc(b.name)}" title="${esc(b.cls)} ${shp(b.out_shape)}">${esc(b.name)}</button>`).join("");
document.querySelectorAll("#blocklist button").forEach((x) => x.onclick = () => {
  const v = current(); select(x.dataset.block, v === "overview" ? "block" : v); });
document.querySelectorAll("nav button").forEach((x) => x.onclick = () => show(x.dataset.view));
if (!D.snapshots) $("nav-training").title = "one set of weights: no training slider";
renderOverview();
document.querySelectorAll("#blocklist button")[0].classList.add("on");
"""
