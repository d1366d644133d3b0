// One self-contained HTML file: the binned data as JSON, a small inline script that draws it on
// canvases, inline CSS. Nothing is fetched at view time. When drawing finishes, <body> carries
// data-rendered="1" and per-chart counts of drawn elements (data-drawn-*), which the tests read
// through a headless browser's DOM dump; a drawing error sets data-render-error instead.
import type { ReportData } from './model.js';

const CSS = `
body{font:14px/1.4 "DejaVu Sans",system-ui,sans-serif;margin:24px;color:#222;background:#fff;max-width:1100px}
h1{font-size:22px;margin:0 0 2px}h2{font-size:17px;margin:28px 0 6px}.sub{color:#666;margin-bottom:14px}
table.summary{border-collapse:collapse}table.summary td{padding:3px 14px 3px 0;vertical-align:top}
table.summary td:first-child{color:#555;white-space:nowrap}
.legend{display:flex;flex-wrap:wrap;gap:4px 16px;margin:6px 0;font-size:13px}
.legend span{display:inline-block;width:12px;height:12px;margin-right:5px;vertical-align:-1px;border:1px solid #0002}
canvas{display:block;border:1px solid #dde}.note{color:#8a5a00;font-size:13px}
`;

// Plain browser JavaScript (ES2017), kept small; every chart is drawn from pre-binned data.
const SCRIPT = String.raw`
(function () {
  var body = document.body;
  function fmtBytes(n) { return n >= 1073741824 ? (n / 1073741824).toFixed(n % 1073741824 ? 2 : 0) + ' GiB' : n >= 1048576 ? (n / 1048576).toFixed(0) + ' MiB' : n >= 1024 ? (n / 1024).toFixed(0) + ' KiB' : n + ' B'; }
  function fmtUs(us) { return us >= 1e6 ? (us / 1e6).toFixed(1) + ' s' : us >= 1000 ? (us / 1000).toFixed(us >= 1e4 ? 0 : 1) + ' ms' : Math.round(us) + ' µs'; }
  function canvas(parent, w, h) {
    var c = document.createElement('canvas'); var r = window.devicePixelRatio || 1;
    c.width = w * r; c.height = h * r; c.style.width = w + 'px'; c.style.height = h + 'px';
    parent.appendChild(c); var g = c.getContext('2d'); g.scale(r, r); g.font = '11px "DejaVu Sans", sans-serif'; return g;
  }
  function legend(parent, items) {
    var d = document.createElement('div'); d.className = 'legend';
    items.forEach(function (it) { var s = document.createElement('div'); var b = document.createElement('span'); b.style.background = it.color; s.appendChild(b); s.appendChild(document.createTextNode(it.name + (it.extra || ''))); d.appendChild(s); });
    parent.appendChild(d);
  }
  function axisX(g, x0, y, w, maxUs, ticks) {
    g.fillStyle = '#555'; g.textAlign = 'center';
    for (var i = 0; i <= ticks; i++) { var x = x0 + (w * i) / ticks; g.fillRect(x, y, 1, 4); g.fillText(fmtUs((maxUs * i) / ticks), x, y + 15); }
  }
  var draw = {
    map: function (s, el) {
      var totals = s.categories.map(function (_, k) { return s.counts[k].reduce(function (a, b) { return a + b; }, 0); });
      legend(el, s.categories.map(function (c, k) { return { name: c.name, color: c.color, extra: ' — ' + fmtBytes(totals[k] * s.pageSizeBytes) }; }).filter(function (_, k) { return totals[k] > 0 || k === 0; }));
      var cols = Math.min(256, s.bins), rows = Math.ceil(s.bins / cols), cellW = 1000 / cols, cellH = 22, left = 70;
      var g = canvas(el, left + 1000 + 4, rows * (cellH + 3) + 4), drawn = 0;
      for (var r = 0; r < rows; r++) {
        g.fillStyle = '#555'; g.textAlign = 'right'; g.fillText(fmtBytes(Math.floor((r * cols * s.sizeBytes) / s.bins)), left - 6, r * (cellH + 3) + 15);
        for (var c = 0; c < cols; c++) {
          var bin = r * cols + c; if (bin >= s.bins) break;
          var tot = 0, k; for (k = 0; k < s.categories.length; k++) tot += s.counts[k][bin];
          if (tot === 0) continue;
          var y = r * (cellH + 3) + 2, x = left + c * cellW;
          // Stacked: each category's share of the bin's pages as a slice of the cell's height.
          for (k = 0; k < s.categories.length; k++) {
            var n = s.counts[k][bin]; if (!n) continue;
            var hgt = (cellH * n) / tot; g.fillStyle = s.categories[k].color; g.fillRect(x, y, Math.max(cellW, 1), hgt); y += hgt; drawn++;
          }
        }
      }
      return drawn;
    },
    heat: function (s, el) {
      legend(el, s.layers.map(function (l) { var n = 0; for (var i = 2; i < l.cells.length; i += 3) n += l.cells[i]; return { name: l.name, color: l.color, extra: ' (' + n.toLocaleString('en') + ')' }; }));
      var left = 70, w = 1000, h = 360, top = 6, g = canvas(el, left + w + 10, h + top + 26), drawn = 0;
      g.strokeStyle = '#ccd'; g.strokeRect(left, top, w, h);
      g.fillStyle = '#555'; g.textAlign = 'right';
      for (var i = 0; i <= 8; i++) g.fillText(fmtBytes(Math.round((s.sizeBytes * i) / 8)), left - 6, top + (h * i) / 8 + 4);
      axisX(g, left, top + h, w, s.timeMaxUs, 10);
      var cw = w / s.timeBins, ch = h / s.offsetBins;
      s.layers.forEach(function (l) {
        var max = 1; for (var i = 2; i < l.cells.length; i += 3) max = Math.max(max, l.cells[i]);
        g.fillStyle = l.color;
        for (i = 0; i < l.cells.length; i += 3) {
          g.globalAlpha = 0.25 + (0.75 * Math.log(1 + l.cells[i + 2])) / Math.log(1 + max);
          g.fillRect(left + l.cells[i] * cw, top + l.cells[i + 1] * ch, Math.max(cw, 1.5), Math.max(ch, 1.5)); drawn++;
        }
        g.globalAlpha = 1;
      });
      return drawn;
    },
    latency: function (s, el) {
      legend(el, s.series.map(function (x) { return { name: x.name, color: x.color, extra: ' (' + x.total.toLocaleString('en') + ')' }; }));
      var left = 70, w = 1000, h = 220, top = 6, g = canvas(el, left + w + 10, h + top + 26), drawn = 0;
      var first = s.series[0].counts.length, last = 0, max = 1;
      s.series.forEach(function (x) { x.counts.forEach(function (c, b) { if (c) { first = Math.min(first, b); last = Math.max(last, b); max = Math.max(max, c); } }); });
      if (last < first) { first = 0; last = 1; }
      first = Math.max(0, first - 1); last = last + 2;
      var nb = last - first, bw = w / nb, nser = s.series.length;
      g.strokeStyle = '#ccd'; g.strokeRect(left, top, w, h);
      g.fillStyle = '#555'; g.textAlign = 'center';
      for (var b = first; b <= last; b += s.binsPerOctave) g.fillText(fmtUs(Math.pow(2, b / s.binsPerOctave)), left + (b - first) * bw, top + h + 15);
      g.textAlign = 'right'; g.fillText(max.toLocaleString('en'), left - 6, top + 10); g.fillText('0', left - 6, top + h);
      s.series.forEach(function (x, j) {
        g.fillStyle = x.color;
        for (var b = first; b < last; b++) {
          var c = x.counts[b]; if (!c) continue;
          // Square-root scale: a few slow faults stay visible next to thousands of fast ones.
          var hh = Math.max(1, (h * Math.sqrt(c)) / Math.sqrt(max));
          g.fillRect(left + (b - first) * bw + (j * bw) / nser, top + h - hh, Math.max(1, bw / nser - 0.5), hh); drawn++;
        }
      });
      return drawn;
    },
    waterfall: function (s, el) {
      legend(el, s.sources.map(function (x) { return { name: 'from ' + x.name, color: x.color }; }).concat([{ name: 'a fault waited on it (outlined)', color: '#fff' }]));
      var left = 70, w = 1000, rowH = Math.max(3, Math.min(12, Math.floor(480 / Math.max(1, s.rows.length)))), top = 6;
      var h = rowH * s.rows.length, g = canvas(el, left + w + 10, h + top + 26), drawn = 0, sc = w / Math.max(1, s.timeMaxUs);
      g.strokeStyle = '#ccd'; g.strokeRect(left, top, w, h);
      axisX(g, left, top + h, w, s.timeMaxUs, 10);
      s.rows.forEach(function (r, i) {
        var y = top + i * rowH, x0 = left + r[1] * sc, x1 = r[2] < 0 ? left + w : left + r[2] * sc;
        g.fillStyle = s.sources[r[4]] ? s.sources[r[4]].color : '#999';
        g.fillRect(x0, y + 0.5, Math.max(2, x1 - x0), rowH - 1); drawn++;
        if (r[5] > 0) { g.strokeStyle = '#e15759'; g.lineWidth = 1.5; g.strokeRect(x0, y + 0.5, Math.max(2, x1 - x0), rowH - 1); }
        if (rowH >= 10) { g.fillStyle = '#555'; g.textAlign = 'right'; g.fillText('#' + r[0], left - 6, y + rowH - 2); }
      });
      if (s.omitted > 0) { var p = document.createElement('p'); p.className = 'note'; p.textContent = s.omitted + ' later fetches not shown'; el.appendChild(p); }
      return drawn;
    }
  };
  try {
    var data = JSON.parse(document.getElementById('report-data').textContent);
    var root = document.getElementById('charts');
    data.sections.forEach(function (s, i) {
      var el = document.createElement('section'); var h2 = document.createElement('h2'); h2.textContent = s.title; el.appendChild(h2); root.appendChild(el);
      body.setAttribute('data-drawn-' + s.kind, String(draw[s.kind](s, el)));
    });
    body.setAttribute('data-rendered', '1');
  } catch (e) {
    body.setAttribute('data-render-error', String(e && e.stack || e));
    console.error('report rendering failed', e);
  }
})();
`;

function escapeHtml(s: string): string {
  return s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);
}

export function renderReportHtml(data: ReportData): string {
  // JSON inside <script>: `<` escaped so no string in the data can close the element.
  const json = JSON.stringify(data).replace(/</g, '\\u003c');
  const rows = data.summary.map(([k, v]) => `<tr><td>${escapeHtml(k)}</td><td>${escapeHtml(v)}</td></tr>`).join('');
  const notes = data.notes.map((n) => `<p class="note">${escapeHtml(n)}</p>`).join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(data.title)}</title>
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'">
<style>${CSS}</style></head>
<body>
<h1>${escapeHtml(data.title)}</h1><div class="sub">${escapeHtml(data.subtitle)}</div>
<table class="summary">${rows}</table>${notes}
<div id="charts"></div>
<script type="application/json" id="report-data">${json}</script>
<script>${SCRIPT}</script>
</body></html>
`;
}
