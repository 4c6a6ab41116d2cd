// The explorer panel of map.html: read a post whole with its neighbours, list and export a selection, isolate a
// cluster, toggle the cluster labels, colour by a corpus column. Every text of the corpus is data: it reaches the
// page through textContent, dataset or plotly's escaped text, never as markup.
window.mapExplorer = (function () {
  'use strict';
  var LIST_MAX = 1000;
  var gd, settings, posts = null, xy = [], pending = null, builtColumns = {};

  function $(id) { return document.getElementById(id); }
  function el(tag, text, className) {
    var e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = text;
    if (className) e.className = className;
    return e;
  }
  // plotly draws trace names as its own small HTML: entities keep a name's "<" and "&" as text (it decodes
  // these three, not &quot;, and a quote outside a tag is text anyway).
  function plotlyText(s) {
    return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  }
  function panel() {
    var p = $('panel');
    p.textContent = '';
    delete p.dataset.post;
    delete p.dataset.selected;
    p.scrollTop = 0;
    return p;
  }
  function rowOf(point) {
    var rows = gd.data[point.curveNumber].customdata;
    return rows && rows[point.pointNumber] ? rows[point.pointNumber][4] : undefined;
  }
  function firstLine(text) {
    var lines = text.split('\n').slice(1).map(function (l) { return l.trim(); }).filter(Boolean);
    var line = lines.length ? lines[0] : '';
    return line.length > 120 ? line.slice(0, 119) + '…' : line;
  }
  function postButton(i, detail) {
    var b = el('button', posts.subject[i] || '(no subject)', 'post-link');
    b.type = 'button';
    b.dataset.doc = posts.doc_id[i];
    b.addEventListener('click', function () { showPost(i); });
    var li = el('li');
    li.append(b);
    if (detail) li.append(el('span', detail, 'detail'));
    return li;
  }
  function definition(list, term, value) {
    list.append(el('dt', term), el('dd', value));
  }
  function mark(rows) {
    var shapes = rows.map(function (i) {
      return {type: 'circle', xref: 'x', yref: 'y', xsizemode: 'pixel', ysizemode: 'pixel', xanchor: xy[i][0],
        yanchor: xy[i][1], x0: -9, x1: 9, y0: -9, y1: 9, line: {color: '#d62728', width: 2}};
    });
    Plotly.relayout(gd, {shapes: shapes});
  }

  function showPost(i) {
    if (!posts) { pending = i; return; }
    var p = panel(), meta = el('dl');
    p.dataset.post = posts.doc_id[i];
    p.append(el('h2', posts.subject[i] || '(no subject)', 'subject'));
    if (settings.classes.length) definition(meta, 'class', settings.classes[posts['class'][i]]);
    definition(meta, 'cluster', settings.clusters[posts.cluster[i]].label);
    definition(meta, 'doc_id', posts.doc_id[i]);
    settings.columns.forEach(function (c) { definition(meta, c.name, c.values[posts.columns[c.name][i]]); });
    p.append(meta, el('pre', posts.text[i], 'post-text'));
    if (posts.neighbours) {
      p.append(el('h3', 'Nearest neighbours (embedding space)'));
      var ol = el('ol', null, 'neighbours');
      posts.neighbours[i].forEach(function (j) { ol.append(postButton(j, settings.clusters[posts.cluster[j]].label)); });
      p.append(ol);
    }
    mark([i]);
  }

  function counts(rows, key, names) {
    var by = {};
    rows.forEach(function (i) { var n = names(posts[key][i]); by[n] = (by[n] || 0) + 1; });
    return Object.keys(by).sort(function (a, b) { return by[b] - by[a] || (a < b ? -1 : 1); })
      .map(function (n) { return [n, by[n]]; });
  }
  function breakdown(title, pairs) {
    var table = el('table', null, 'breakdown');
    table.append(el('caption', title));
    pairs.forEach(function (pair) {
      var tr = el('tr');
      tr.append(el('td', pair[0]), el('td', String(pair[1]), 'count'));
      table.append(tr);
    });
    return table;
  }
  function csvField(value) {
    var s = String(value === undefined || value === null ? '' : value);
    return /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  }
  function download(rows) {
    var lines = [['doc_id', 'subject', 'class', 'cluster'].join(',')];
    rows.forEach(function (i) {
      lines.push([posts.doc_id[i], posts.subject[i], settings.classes.length ? settings.classes[posts['class'][i]] : '',
        settings.clusters[posts.cluster[i]].label].map(csvField).join(','));
    });
    var link = el('a');
    link.href = URL.createObjectURL(new Blob([lines.join('\r\n') + '\r\n'], {type: 'text/csv;charset=utf-8'}));
    link.download = 'map-selection.csv';
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(function () { URL.revokeObjectURL(link.href); }, 60000);
  }
  function showSelection(rows) {
    if (!posts) return;
    var p = panel();
    p.dataset.selected = rows.length;
    p.append(el('h2', rows.length + (rows.length === 1 ? ' post selected' : ' posts selected')));
    var button = el('button', 'Download CSV', 'download');
    button.type = 'button';
    button.id = 'download-csv';
    button.addEventListener('click', function () { download(rows); });
    p.append(button);
    if (settings.classes.length) p.append(breakdown('By class', counts(rows, 'class', function (c) { return settings.classes[c]; })));
    p.append(breakdown('By cluster', counts(rows, 'cluster', function (c) { return settings.clusters[c].label; })));
    var ul = el('ul', null, 'selection');
    rows.slice(0, LIST_MAX).forEach(function (i) { ul.append(postButton(i, firstLine(posts.text[i]))); });
    p.append(ul);
    if (rows.length > LIST_MAX) p.append(el('p', 'The first ' + LIST_MAX + ' are listed; the CSV holds all.', 'hint'));
  }

  function setVisible(shown, legend) {
    var visible = gd.data.map(function (t, i) { return i === settings.highlight || shown.indexOf(i) >= 0; });
    return Plotly.update(gd, {visible: visible}, {'legend.title.text': legend});
  }
  function isolate(k) {
    var cluster = settings.clusters[k];
    $('colour-by').value = '';
    setVisible([cluster.trace], 'Cluster');
    var p = panel();
    p.append(el('h2', cluster.label));
    var meta = el('dl');
    definition(meta, 'posts', String(cluster.size));
    if (cluster.matched) definition(meta, 'matched class', cluster.matched);
    p.append(meta);
    var all = el('button', 'Show all clusters', 'show-all');
    all.type = 'button';
    all.addEventListener('click', function () { setVisible(settings.clusterTraces, 'Cluster'); panel(); });
    p.append(all);
    if (posts) {
      p.append(el('h3', 'Most central posts'));
      var ol = el('ol', null, 'central');
      cluster.central.forEach(function (i) { ol.append(postButton(i, firstLine(posts.text[i]))); });
      p.append(ol);
    }
  }
  function clusterList() {
    var ol = $('cluster-list');
    settings.clusters.forEach(function (c, k) {
      var b = el('button', null, 'cluster');
      b.type = 'button';
      b.dataset.trace = c.trace;
      var swatch = el('span', null, 'swatch');
      swatch.style.background = c.colour;
      b.append(swatch, el('span', c.label, 'name'), el('span', c.size + ' posts', 'detail'));
      b.addEventListener('click', function () { isolate(k); });
      var li = el('li');
      li.append(b);
      ol.append(li);
    });
  }

  function columnTraces(c) {
    if (builtColumns[c]) return Promise.resolve(builtColumns[c]);
    var column = settings.columns[c], codes = posts.columns[column.name], model = gd.data[settings.clusterTraces[0]];
    var traces = column.values.map(function (value, j) {
      return {type: model.type, mode: 'markers', name: plotlyText(value || '(none)'), x: [], y: [], customdata: [],
        visible: false, hovertemplate: model.hovertemplate,
        marker: {color: column.colours[j], size: model.marker.size, opacity: model.marker.opacity}};
    });
    settings.clusterTraces.forEach(function (t) {
      var trace = gd.data[t];
      trace.customdata.forEach(function (row, i) {
        var target = traces[codes[row[4]]];
        target.x.push(trace.x[i]); target.y.push(trace.y[i]); target.customdata.push(row);
      });
    });
    var first = gd.data.length;
    return Plotly.addTraces(gd, traces).then(function () {
      builtColumns[c] = traces.map(function (_, j) { return first + j; });
      return builtColumns[c];
    });
  }
  function colourBy() {
    var value = $('colour-by').value;
    if (value === '') { setVisible(settings.clusterTraces, 'Cluster'); return; }
    columnTraces(Number(value)).then(function (shown) { setVisible(shown, plotlyText(settings.columns[value].name)); });
  }

  function labels(on) {
    var update = {};
    (gd.layout.annotations || []).forEach(function (_, i) { update['annotations[' + i + '].visible'] = on; });
    Plotly.relayout(gd, update);
  }

  async function inflate(block) {
    var bytes;
    if (Uint8Array.fromBase64) {
      bytes = Uint8Array.fromBase64(block);
    } else {
      var binary = atob(block);
      bytes = new Uint8Array(binary.length);
      for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    }
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return JSON.parse(await new Response(stream).text());
  }
  function whenParsed() {
    return new Promise(function (resolve) {
      if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', resolve);
      else resolve();
    });
  }

  // Called by the page once the hover rows are attached (after the first frame).
  function start(plot) {
    gd = plot;
    settings = JSON.parse($('explorer-settings').textContent);
    settings.clusterTraces.forEach(function (t) {
      var trace = gd.data[t];
      trace.customdata.forEach(function (row, i) { xy[row[4]] = [trace.x[i], trace.y[i]]; });
    });
    clusterList();
    $('show-labels').addEventListener('change', function (e) { labels(e.target.checked); });
    gd.on('plotly_click', function (event) {
      var rows = event.points.map(rowOf).filter(function (i) { return i !== undefined; });
      if (rows.length) showPost(rows[0]);
    });
    gd.on('plotly_selected', function (event) {
      if (!event) return;
      var seen = {}, rows = [];
      event.points.forEach(function (p) {
        var i = rowOf(p);
        if (i !== undefined && !seen[i]) { seen[i] = true; rows.push(i); }
      });
      showSelection(rows);
    });
    gd.on('plotly_buttonclicked', function () {
      $('colour-by').value = '';
      var columns = [].concat.apply([], Object.keys(builtColumns).map(function (c) { return builtColumns[c]; }));
      if (columns.length) Plotly.restyle(gd, {visible: false}, columns);
    });
    $('colour-by').addEventListener('change', colourBy);
    return whenParsed().then(function () { return inflate($('explorer-data').textContent); }).then(function (data) {
      posts = data;
      settings.columns.forEach(function (c, k) {
        var option = el('option', c.name);
        option.value = String(k);
        $('colour-by').append(option);
      });
      $('colour-by').disabled = !settings.columns.length;
      window.mapPanelReady = performance.now();
      if (pending !== null) showPost(pending);
    });
  }

  return {start: start, showPost: showPost};
})();
