// The modelhost console: a single page with hash routes over the server's own read-only
// operations (POST /console/api/<X-Amz-Target>, the same JSON boto3 gets). Every page
// polls while it is open; the DOM is built with textContent only, never from HTML strings.
"use strict";

(() => {
  const POLL_MS = 5000;
  // window -> [span in seconds, period in seconds]
  const WINDOWS = { "1h": [3600, 60], "3h": [10800, 60], "1d": [86400, 300] };
  const COST_SPAN_S = 15 * 86400; // the metric history's retention
  const COLORS = ["#2459c7", "#c62828", "#1a7f37", "#9a6700", "#7b3fb5", "#00838f", "#5f6b7c"];
  const LIMIT_COLOR = "#8a94a3";
  const SM = "SageMaker.";
  const CW = "GraniteServiceVersion20100801.";
  const AAS = "AnyScaleFrontendService.";
  const LOGS = "Logs_20140328.";
  const MH = "Modelhost."; // the server's own reading routes (console/app.py's Read)

  const main = document.getElementById("main");
  const footer = document.getElementById("status");
  let generation = 0; // bumped on every route change: a stale refresh draws nothing
  let timer = null;
  let charts = new Map();
  const terminalJobs = new Map(); // transform jobs that cannot change any more

  class ApiError extends Error {}

  async function call(target, body) {
    const response = await fetch("/console/api/" + target, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Modelhost-Console": "1" },
      body: JSON.stringify(body || {}),
    });
    if (response.status === 401) {
      location.assign("/console/login");
      throw new ApiError("signed out");
    }
    const data = await response.json();
    if (!response.ok) {
      const code = data.__type || data.code || response.status;
      throw new ApiError(code + ": " + (data.message || data.Message || ""));
    }
    return data;
  }

  // --- DOM helpers -----------------------------------------------------------------------

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") el.className = value;
      else el.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      el.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return el;
  }

  function table(headers, rows, empty) {
    if (!rows.length) return h("p", { class: "muted" }, empty || "None.");
    return h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, headers.map((t) => h("th", { class: t.endsWith(" ") ? "num" : null }, t.trim())))),
        h("tbody", {}, rows.map((cells) => h("tr", {}, cells.map((c) => (c instanceof Node && c.tagName === "TD" ? c : h("td", {}, c)))))),
      ),
    );
  }

  const num = (value) => h("td", { class: "num" }, value);
  const badge = (status) => h("span", { class: "status " + status }, status);
  const link = (href, text) => h("a", { href }, text);
  const enc = encodeURIComponent;

  function when(seconds) {
    if (seconds === undefined || seconds === null) return "";
    return new Date(seconds * 1000).toLocaleString();
  }

  function usd(value) {
    if (value === null || value === undefined) return "—";
    return "$" + (value === 0 ? "0" : value < 0.01 ? value.toPrecision(2) : value.toFixed(2));
  }

  function section(id, title, ...children) {
    return h("section", { class: "card", id }, title ? h("h2", {}, title) : null, ...children);
  }

  // Replace a section's body (everything after its heading) in place.
  function fill(id, ...children) {
    const el = document.getElementById(id);
    if (!el) return;
    const heading = el.querySelector(":scope > h2");
    el.replaceChildren(...(heading ? [heading] : []), ...children.flat());
  }

  // --- metrics -------------------------------------------------------------------------

  function metric(id, namespace, name, dimensions, period, stat) {
    return {
      Id: id,
      MetricStat: {
        Metric: {
          Namespace: namespace,
          MetricName: name,
          Dimensions: Object.entries(dimensions).map(([Name, Value]) => ({ Name, Value })),
        },
        Period: period,
        Stat: stat,
      },
    };
  }

  // GetMetricData for `queries`, 500 at a time, all pages; results by Id.
  async function metricData(queries, start, end) {
    const results = {};
    for (let i = 0; i < queries.length; i += 500) {
      let token;
      do {
        const answer = await call(CW + "GetMetricData", {
          MetricDataQueries: queries.slice(i, i + 500),
          StartTime: start,
          EndTime: end,
          ScanBy: "TimestampAscending",
          ...(token ? { NextToken: token } : {}),
        });
        for (const r of answer.MetricDataResults) {
          const into = (results[r.Id] = results[r.Id] || { Timestamps: [], Values: [] });
          into.Timestamps.push(...r.Timestamps);
          into.Values.push(...r.Values);
        }
        token = answer.NextToken;
      } while (token);
    }
    return results;
  }

  const total = (result) => (result ? result.Values.reduce((a, b) => a + b, 0) : 0);
  const peak = (result) => (result && result.Values.length ? Math.max(...result.Values) : 0);
  // A serverless variant's limit as DescribeEndpoint has it now (null while it has none).
  const maxConcurrency = (variant) => (variant.CurrentServerlessConfig || variant.DesiredServerlessConfig || {}).MaxConcurrency ?? null;

  // A result on the window's grid: one value per period, `missing` where there is none.
  function onGrid(result, grid, period, missing, scale) {
    const values = grid.map(() => missing);
    if (!result) return values;
    result.Timestamps.forEach((t, i) => {
      const at = Math.round((t - grid[0]) / period);
      if (at >= 0 && at < grid.length) values[at] = result.Values[i] * scale;
    });
    return values;
  }

  // One chart over [from, to]: drawn the first time, its data replaced on later polls. A
  // series is a label, or { label, limit: true } for a configured bound (MaxConcurrency)
  // drawn as a dashed grey line and not counted as data.
  function chart(container, key, title, seriesLabels, grid, columns, marks, span) {
    const specs = seriesLabels.map((s) => (typeof s === "string" ? { label: s } : s));
    const measured = columns.filter((_, i) => !specs[i].limit);
    // For the page's readers (and its tests): values charted, and those that are not 0.
    const values = measured.reduce((n, col) => n + col.filter((v) => v !== null).length, 0);
    const points = measured.reduce((n, col) => n + col.filter((v) => v !== null && v !== 0).length, 0);
    let entry = charts.get(key);
    if (!entry || !container.contains(entry.el)) {
      const el = h("div", { class: "chart", "data-chart": key }, h("h3", {}, title));
      const plotHolder = h("div", { class: "plot" });
      el.append(plotHolder);
      container.append(el);
      const state = { marks: marks || [], span };
      const width = Math.max(plotHolder.clientWidth || el.clientWidth - 16, 240);
      const plot = new uPlot(
        {
          width,
          height: 190,
          // With a limit drawn, from 0: how far below its bound a series runs is the point.
          scales: { x: { time: true, range: () => state.span }, ...(specs.some((s) => s.limit) ? { y: { range: (u, low, high) => [0, Math.max(high, 1) * 1.1] } } : {}) },
          // Points always drawn: a metric seen in one period only is one point, no line.
          series: [{}, ...specs.map(({ label, limit }, i) => (limit ? { label, stroke: LIMIT_COLOR, width: 1.5, dash: [6, 4], spanGaps: true, points: { show: false } } : { label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false, points: { show: true, size: 5, fill: COLORS[i % COLORS.length] } }))],
          axes: [{}, { size: 56 }],
          legend: { live: true },
          hooks: {
            draw: [
              (u) => {
                // Autoscaling activities: a dashed vertical line at each one's start.
                const ctx = u.ctx;
                ctx.save();
                ctx.strokeStyle = "#9a6700";
                ctx.setLineDash([4, 4]);
                ctx.lineWidth = 2;
                for (const t of state.marks) {
                  const x = u.valToPos(t, "x", true);
                  if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
                  ctx.beginPath();
                  ctx.moveTo(x, u.bbox.top);
                  ctx.lineTo(x, u.bbox.top + u.bbox.height);
                  ctx.stroke();
                }
                ctx.restore();
              },
            ],
          },
        },
        [grid, ...columns],
        plotHolder,
      );
      entry = { el, plot, state };
      charts.set(key, entry);
    } else {
      entry.state.marks = marks || [];
      entry.state.span = span;
      entry.plot.setData([grid, ...columns]);
    }
    entry.el.setAttribute("data-values", String(values));
    entry.el.setAttribute("data-points", String(points));
    entry.el.setAttribute("data-marks", String((marks || []).length));
  }

  function resizeCharts() {
    for (const { el, plot } of charts.values()) {
      const holder = el.querySelector(".plot");
      if (holder && holder.clientWidth) plot.setSize({ width: holder.clientWidth, height: 190 });
    }
  }
  window.addEventListener("resize", resizeCharts);

  function dropCharts() {
    for (const { plot } of charts.values()) plot.destroy();
    charts = new Map();
  }

  // --- pages ---------------------------------------------------------------------------

  // Every page of a List* operation (at most `cap` items): `key` holds the items.
  async function listAll(target, body, key, cap = 1000) {
    const items = [];
    let token;
    do {
      const answer = await call(target, { ...body, ...(token ? { NextToken: token } : {}) });
      items.push(...answer[key]);
      token = answer.NextToken;
    } while (token && items.length < cap);
    return items;
  }

  async function describeAll(names, describe) {
    return Promise.all(names.map((name) => describe(name).catch(() => null)));
  }

  async function endpointsPage() {
    main.replaceChildren(h("h1", {}, "Endpoints"), section("endpoints", null, h("p", { class: "muted" }, "Loading…")));
    return async () => {
      const listed = await listAll(SM + "ListEndpoints", { MaxResults: 100, SortBy: "Name", SortOrder: "Ascending" }, "Endpoints", 200);
      const described = await describeAll(listed.map((e) => e.EndpointName), (name) => call(SM + "DescribeEndpoint", { EndpointName: name }));
      const now = Date.now() / 1000;
      const queries = [];
      described.forEach((d, i) => {
        for (const v of (d && d.ProductionVariants) || []) {
          queries.push(metric("c" + queries.length, "Modelhost/Endpoints", "Cost", { EndpointName: listed[i].EndpointName, VariantName: v.VariantName }, 86400, "Sum"));
          queries[queries.length - 1].endpoint = i;
        }
      });
      const costs = listed.map(() => null);
      if (queries.length) {
        const endpointOf = Object.fromEntries(queries.map((q) => [q.Id, q.endpoint]));
        queries.forEach((q) => delete q.endpoint);
        const results = await metricData(queries, Math.floor((now - COST_SPAN_S) / 86400) * 86400, now + 60);
        for (const [id, result] of Object.entries(results)) {
          const i = endpointOf[id];
          costs[i] = (costs[i] || 0) + total(result);
        }
      }
      const rows = listed.map((e, i) => {
        const d = described[i] || {};
        const variants = d.ProductionVariants || [];
        const instances = variants.reduce((n, v) => n + (v.CurrentInstanceCount || 0), 0);
        return [
          link("#/endpoint/" + enc(e.EndpointName), e.EndpointName),
          badge(e.EndpointStatus),
          variants.map((v) => h("div", {}, `${v.VariantName}: ${v.CurrentInstanceCount ?? 0}/${v.DesiredInstanceCount ?? 0}` + (v.CurrentServerlessConfig ? " (serverless)" : ""))),
          num(instances),
          num(usd(costs[i] ?? 0)),
          when(e.CreationTime),
          when(e.LastModifiedTime),
        ];
      });
      fill("endpoints", table(["Name", "Status", "Variants (instances now/desired)", "Instances ", "Cost so far ", "Created", "Modified"], rows, "No endpoints yet."));
    };
  }

  async function endpointPage(name, windowName) {
    const [span, period] = WINDOWS[windowName] || WINDOWS["1h"];
    windowName = WINDOWS[windowName] ? windowName : "1h";
    main.replaceChildren(
      h("p", {}, link("#/endpoints", "← Endpoints")),
      h("h1", {}, name, " ", h("span", { id: "endpoint-status" })),
      h("p", { id: "failure", class: "error" }),
      h("div", { class: "windows" }, h("span", { class: "muted" }, "Window:"), Object.keys(WINDOWS).map((w) => h("a", { href: `#/endpoint/${enc(name)}?window=${w}`, class: w === windowName ? "current" : null }, w))),
      h("div", { class: "summary", id: "summary" }),
      h("div", { class: "charts", id: "charts" }),
      section("variants", "Variants"),
      section("instances", "Instances"),
      section("events", "Events and autoscaling activities"),
      h("div", { id: "async-holder" }),
      section("logs", "Log tail"),
      section("config", "Endpoint config"),
    );
    return async () => {
      const endpoint = await call(SM + "DescribeEndpoint", { EndpointName: name });
      const variants = endpoint.ProductionVariants || [];
      const [config, activities, streams] = await Promise.all([
        call(SM + "DescribeEndpointConfig", { EndpointConfigName: endpoint.EndpointConfigName }).catch(() => null),
        Promise.all(variants.map((v) => call(AAS + "DescribeScalingActivities", { ServiceNamespace: "sagemaker", ResourceId: `endpoint/${name}/variant/${v.VariantName}`, ScalableDimension: "sagemaker:variant:DesiredInstanceCount", MaxResults: 50 }).then((a) => a.ScalingActivities))),
        call(LOGS + "DescribeLogStreams", { logGroupName: "/aws/sagemaker/Endpoints/" + name, orderBy: "LastEventTime", descending: true, limit: 50 }).then((a) => a.logStreams).catch(() => []),
      ]);
      const now = Date.now() / 1000;
      const start = Math.floor((now - span) / period) * period;
      const grid = [];
      for (let t = start; t <= now; t += period) grid.push(t);
      const queries = [];
      variants.forEach((v, i) => {
        const dims = { EndpointName: name, VariantName: v.VariantName };
        const sm = (id, m, stat) => queries.push(metric(`v${i}_${id}`, "AWS/SageMaker", m, dims, period, stat));
        sm("inv", "Invocations", "Sum");
        sm("e4", "Invocation4XXErrors", "Sum");
        sm("e5", "Invocation5XXErrors", "Sum");
        sm("ml50", "ModelLatency", "p50");
        sm("ml99", "ModelLatency", "p99");
        sm("ol50", "OverheadLatency", "p50");
        sm("ol99", "OverheadLatency", "p99");
        queries.push(metric(`v${i}_ic`, "Modelhost/Endpoints", "InstanceCount", dims, period, "Maximum"));
        queries.push(metric(`v${i}_cost`, "Modelhost/Endpoints", "Cost", dims, period, "Sum"));
        queries.push(metric(`v${i}_cpu`, "/aws/sagemaker/Endpoints", "CPUUtilization", dims, period, "Average"));
        queries.push(metric(`v${i}_mem`, "/aws/sagemaker/Endpoints", "MemoryUtilization", dims, period, "Average"));
      });
      const serverless = ((config && config.ProductionVariants) || []).some((v) => v.ServerlessConfig);
      const isAsync = Boolean(config && config.AsyncInferenceConfig);
      if (serverless) {
        variants.forEach((v, i) => {
          const dims = { EndpointName: name, VariantName: v.VariantName };
          queries.push(metric(`v${i}_cold`, "Modelhost/Endpoints", "ColdStarts", dims, period, "Sum"));
          queries.push(metric(`v${i}_conc`, "Modelhost/Endpoints", "ConcurrentExecutions", dims, period, "Maximum"));
          queries.push(metric(`v${i}_setup`, "AWS/SageMaker", "ModelSetupTime", dims, period, "p50"));
        });
      }
      if (isAsync) queries.push(metric("backlog", "AWS/SageMaker", "ApproximateBacklogSize", { EndpointName: name }, period, "Maximum"));
      queries.push(metric("all_e4", "AWS/SageMaker", "Invocation4XXErrors", { EndpointName: name }, period, "Sum"));
      queries.push(metric("all_e5", "AWS/SageMaker", "Invocation5XXErrors", { EndpointName: name }, period, "Sum"));
      const [data, logTail, requests] = await Promise.all([
        metricData(queries, start, now + period),
        tail(name, streams),
        isAsync ? call(MH + "ListAsyncRequests", { EndpointName: name }) : null,
      ]);

      const statusEl = document.getElementById("endpoint-status");
      statusEl.replaceChildren(badge(endpoint.EndpointStatus));
      document.getElementById("failure").textContent = endpoint.FailureReason || "";

      const sum = (id) => variants.reduce((n, _, i) => n + total(data[`v${i}_${id}`]), 0);
      const invocations = sum("inv");
      const errors4 = sum("e4") + total(data.all_e4);
      const errors5 = sum("e5") + total(data.all_e5);
      const stat = (id, label, value) => h("div", { class: "stat" }, h("div", { class: "value", id }, value), h("div", { class: "label" }, label));
      document.getElementById("summary").replaceChildren(
        stat("invocation-total", `Invocations (${windowName})`, String(invocations)),
        stat("errors-4xx", `4XX errors (${windowName})`, String(errors4)),
        stat("errors-5xx", `5XX errors (${windowName})`, String(errors5)),
        stat("instance-total", "Instances now", String(variants.reduce((n, v) => n + (v.CurrentInstanceCount || 0), 0))),
        stat("cost-window", `Cost (${windowName})`, usd(sum("cost"))),
        ...(serverless ? [stat("concurrency-peak", `Peak concurrent executions (${windowName}) · MaxConcurrency ${variants.map(maxConcurrency).join(" / ")}`, variants.map((_, i) => peak(data[`v${i}_conc`])).join(" / "))] : []),
      );

      const holder = document.getElementById("charts");
      const labels = variants.map((v) => v.VariantName);
      const per = (id, missing, scale) => variants.map((_, i) => onGrid(data[`v${i}_${id}`], grid, period, missing, scale));
      const marks = activities.flat().map((a) => a.StartTime);
      const range = [start, now];
      const draw = (key, title, series, columns, withMarks) => chart(holder, key, title, series, grid, columns, withMarks, range);
      draw("invocations", "Invocations per minute", labels, per("inv", 0, 60 / period));
      draw("model-latency", "ModelLatency p50 / p99 (ms)", labels.flatMap((l) => [l + " p50", l + " p99"]), variants.flatMap((_, i) => [onGrid(data[`v${i}_ml50`], grid, period, null, 0.001), onGrid(data[`v${i}_ml99`], grid, period, null, 0.001)]));
      draw("overhead-latency", "OverheadLatency p50 / p99 (ms)", labels.flatMap((l) => [l + " p50", l + " p99"]), variants.flatMap((_, i) => [onGrid(data[`v${i}_ol50`], grid, period, null, 0.001), onGrid(data[`v${i}_ol99`], grid, period, null, 0.001)]));
      draw("errors", "4XX / 5XX errors per period", ["4XX", "5XX"], [
        grid.map((_, k) => per("e4", 0, 1).reduce((n, col) => n + col[k], 0) + onGrid(data.all_e4, grid, period, 0, 1)[k]),
        grid.map((_, k) => per("e5", 0, 1).reduce((n, col) => n + col[k], 0) + onGrid(data.all_e5, grid, period, 0, 1)[k]),
      ]);
      draw("instances", "Instance count (dashed: autoscaling activities)", labels, per("ic", null, 1), marks);
      draw("cpu", "CPU utilization (% of one core)", labels, per("cpu", null, 1));
      draw("memory", "Memory utilization (%)", labels, per("mem", null, 1));
      if (serverless) {
        draw("concurrency", "Serverless concurrent executions, maximum (dashed: MaxConcurrency)", [...labels, ...labels.map((l) => ({ label: l + " MaxConcurrency", limit: true }))], [...per("conc", null, 1), ...variants.map((v) => grid.map(() => maxConcurrency(v)))]);
        draw("cold-starts", "Serverless cold starts per period", labels, per("cold", 0, 1));
        draw("setup-time", "ModelSetupTime p50 (ms)", labels, per("setup", null, 0.001));
      }
      if (isAsync) draw("backlog", "Asynchronous backlog (requests, maximum)", ["backlog"], [onGrid(data.backlog, grid, period, null, 1)]);

      const instanceTypes = Object.fromEntries(((config && config.ProductionVariants) || []).map((v) => [v.VariantName, v.InstanceType || (v.ServerlessConfig ? "serverless" : "")]));
      fill("variants", table(["Variant", "Instance type", "Instances now ", "Desired ", "Weight now ", "Desired weight "], variants.map((v) => [v.VariantName, instanceTypes[v.VariantName] || "", num(v.CurrentInstanceCount ?? 0), num(v.DesiredInstanceCount ?? 0), num(v.CurrentWeight ?? ""), num(v.DesiredWeight ?? "")])));
      fill("instances", table(["Variant", "Instance", "Log stream", "Last log line"], streams.map((s) => [s.logStreamName.split("/")[0], s.logStreamName.split("/").slice(1).join("/"), s.logStreamName, when(s.lastEventTimestamp / 1000)]), "No instance has logged yet."));
      const events = [
        ...activities.flat().map((a) => ({ at: a.StartTime, what: a.Description, why: a.Cause, status: a.StatusCode })),
        { at: endpoint.CreationTime, what: "Endpoint created", why: "", status: "" },
        ...(endpoint.LastModifiedTime !== endpoint.CreationTime ? [{ at: endpoint.LastModifiedTime, what: "Endpoint last modified (" + endpoint.EndpointStatus + ")", why: endpoint.FailureReason || "", status: "" }] : []),
      ].sort((a, b) => b.at - a.at);
      fill("events", table(["When", "What", "Why", "Status"], events.map((e) => [when(e.at), e.what, e.why, e.status ? badge(e.status) : ""])));
      const asyncHolder = document.getElementById("async-holder");
      if (requests) {
        if (!document.getElementById("async-requests")) asyncHolder.append(section("async-requests", "Asynchronous requests"));
        const c = requests.Counts;
        fill(
          "async-requests",
          h("p", { id: "async-counts" }, `${c.queued} queued · ${c.running} running · ${c.failed} failed · ${c.succeeded} succeeded`),
          table(["Inference id", "State", "Received", "Attempts", "Input", "Error"], requests.Requests.slice(0, 200).map((r) => [r.inference_id, badge(r.state), when(r.created), num(r.attempts), r.input_location, h("span", { class: "error" }, r.error || "")]), "No request is queued, running or failed."),
        );
      } else asyncHolder.replaceChildren();
      fill("logs", logTail.length ? h("pre", { class: "logs" }, logTail.map((e) => `${new Date(e.timestamp).toISOString()} ${e.stream}  ${e.message}`).join("\n")) : h("p", { class: "muted" }, "No log lines yet."));
      fill("config", config ? [h("p", {}, config.EndpointConfigName), h("pre", {}, JSON.stringify(config, null, 2))] : h("p", { class: "muted" }, "Not found."));
    };
  }

  // The newest lines of an endpoint's instance logs, oldest first.
  async function tail(name, streams) {
    const lines = [];
    await Promise.all(
      streams.slice(0, 8).map(async (s) => {
        const answer = await call(LOGS + "GetLogEvents", { logGroupName: "/aws/sagemaker/Endpoints/" + name, logStreamName: s.logStreamName, startFromHead: false, limit: 40 });
        for (const e of answer.events) lines.push({ ...e, stream: s.logStreamName });
      }),
    );
    lines.sort((a, b) => a.timestamp - b.timestamp);
    return lines.slice(-100);
  }

  async function transformJobsPage() {
    main.replaceChildren(h("h1", {}, "Transform jobs"), section("schedules", "Schedules", h("p", { class: "muted" }, "Loading…")), section("transform-jobs", "Jobs", h("p", { class: "muted" }, "Loading…")));
    return async () => {
      const [jobs, schedules] = await Promise.all([
        listAll(SM + "ListTransformJobs", { MaxResults: 100, SortBy: "CreationTime", SortOrder: "Descending" }, "TransformJobSummaries", 200),
        listAll(MH + "ListSchedules", { MaxResults: 100, SortBy: "Name", SortOrder: "Ascending" }, "Schedules", 200),
      ]);
      fill("schedules", scheduleTable(schedules, jobs));
      const described = await describeAll(jobs.map((j) => j.TransformJobName), async (jobName) => {
        if (terminalJobs.has(jobName)) return terminalJobs.get(jobName);
        const d = await call(SM + "DescribeTransformJob", { TransformJobName: jobName });
        if (["Completed", "Failed", "Stopped"].includes(d.TransformJobStatus)) terminalJobs.set(jobName, d);
        return d;
      });
      const rows = jobs.map((j, i) => {
        const d = described[i] || {};
        const p = d.TransformProgress;
        let done = 0;
        let of = 1;
        if (j.TransformJobStatus === "Completed") done = 1;
        else if (p && p.ObjectsTotal) [done, of] = [p.ObjectsCompleted, p.ObjectsTotal];
        const fraction = of ? done / of : 0;
        const bar = h("progress", { max: of, value: done, "data-job": j.TransformJobName, "data-fraction": fraction.toFixed(4), "data-status": j.TransformJobStatus, "aria-label": "progress of " + j.TransformJobName });
        const detail = p ? `${p.ObjectsCompleted}/${p.ObjectsTotal} objects, ${p.RecordsProcessed} records` : j.TransformJobStatus === "Completed" ? "done" : "";
        return [
          j.TransformJobName,
          badge(j.TransformJobStatus),
          h("div", {}, bar, " ", h("span", { class: "muted" }, Math.round(fraction * 100) + "%" + (detail ? " · " + detail : ""))),
          d.ModelName || "",
          when(j.CreationTime),
          when(j.TransformEndTime),
          h("span", { class: "error" }, j.FailureReason || ""),
        ];
      });
      fill("transform-jobs", table(["Name", "Status", "Progress", "Model", "Created", "Ended", "Failure reason"], rows, "No transform jobs yet."));
    };
  }

  // A schedule's runs are the jobs named `<schedule>-<UTC yyyymmddHHMMSS>` (its due time):
  // the newest few of those listed, with their status.
  const RUNS_SHOWN = 3;
  function scheduleTable(schedules, jobs) {
    const rows = schedules.map((s) => {
      const runs = jobs.filter((j) => j.TransformJobName.startsWith(s.ScheduleName + "-") && /^\d{14}$/.test(j.TransformJobName.slice(s.ScheduleName.length + 1))).slice(0, RUNS_SHOWN);
      return [
        s.ScheduleName,
        h("code", {}, s.ScheduleExpression),
        badge(s.State),
        h("td", { class: "next-run", "data-next-run": s.NextRunTime }, when(s.NextRunTime)),
        when(s.LastRunTime),
        h("td", { class: "runs" }, runs.length ? runs.map((j) => h("div", { class: "run", "data-job": j.TransformJobName }, j.TransformJobName, " ", badge(j.TransformJobStatus))) : h("span", { class: "muted" }, s.LastTransformJobName ? s.LastTransformJobName + " (not listed)" : "No run yet")),
        h("span", { class: "error" }, s.LastError || ""),
      ];
    });
    return table(["Schedule", "Cron", "State", "Next run", "Last run", "Last runs (newest first)", "Last error"], rows, "No schedules. Create one with `modelhost schedules create`.");
  }

  async function recommendationsPage() {
    main.replaceChildren(h("h1", {}, "Inference recommendations"), section("recommendations", null, h("p", { class: "muted" }, "Loading…")));
    return async () => {
      const jobs = await listAll(SM + "ListInferenceRecommendationsJobs", { MaxResults: 100, SortBy: "CreationTime", SortOrder: "Descending" }, "InferenceRecommendationsJobs", 200);
      fill("recommendations", table(["Name", "Type", "Status", "Created", "Ended", "Failure reason"], jobs.map((j) => [link("#/recommendation/" + enc(j.JobName), j.JobName), j.JobType, badge(j.Status), when(j.CreationTime), when(j.CompletionTime), h("span", { class: "error" }, j.FailureReason || "")]), "No recommendation jobs yet."));
    };
  }

  async function recommendationPage(jobName) {
    main.replaceChildren(h("p", {}, link("#/recommendations", "← Inference recommendations")), h("h1", {}, jobName, " ", h("span", { id: "job-status" })), h("div", { class: "charts", id: "curves" }), section("candidates", "Recommendations"), section("detail", "Job"));
    return async () => {
      const [job, curves] = await Promise.all([call(SM + "DescribeInferenceRecommendationsJob", { JobName: jobName }), call(MH + "GetLoadCurves", { JobName: jobName })]);
      loadCurves(document.getElementById("curves"), curves);
      document.getElementById("job-status").replaceChildren(badge(job.Status));
      const rows = (job.InferenceRecommendations || []).map((r) => {
        const m = r.Metrics || {};
        const e = r.EndpointConfiguration || {};
        const where = e.InstanceType || (e.ServerlessConfig ? `serverless ${e.ServerlessConfig.MemorySizeInMB} MB` : "");
        return [where, num(e.InitialInstanceCount ?? ""), num(usd(m.CostPerHour)), num(m.CostPerInference === undefined ? "—" : "$" + m.CostPerInference.toPrecision(3)), num(m.MaxInvocations ?? ""), num(m.ModelLatency ?? "")];
      });
      fill("candidates", table(["Instance type", "Instances ", "Cost per hour ", "Cost per inference ", "Max invocations / min ", "Model latency (ms) "], rows, job.Status === "COMPLETED" ? "No candidate met the job's limits." : "Not finished yet."));
      fill("detail", h("pre", {}, JSON.stringify(job, null, 2)));
    };
  }

  // Latency against throughput, one line per candidate, a point per traffic step: uPlot
  // shares one x axis among series, so each candidate has values at its own steps' x only.
  function loadCurves(holder, curves) {
    const candidates = curves.Candidates.filter((c) => c.Points.length);
    const label = (c) => (c.ServerlessConfig ? `serverless ${c.ServerlessConfig.MemorySizeInMB} MB` : String(c.InstanceType));
    const xs = [...new Set(candidates.flatMap((c) => c.Points.map((p) => p.invocations_per_minute)))].sort((a, b) => a - b);
    const columns = candidates.map((c) => {
      const at = new Map(c.Points.map((p) => [p.invocations_per_minute, p.latency_ms]));
      return xs.map((x) => (at.has(x) ? at.get(x) : null));
    });
    const points = columns.reduce((n, col) => n + col.filter((v) => v !== null).length, 0);
    let entry = charts.get("load-curves");
    if (!entry || !holder.contains(entry.el) || entry.series !== candidates.length) {
      if (entry) entry.plot.destroy();
      holder.replaceChildren();
      const el = h("div", { class: "chart", "data-chart": "load-curves" }, h("h3", {}, `Latency (${curves.Latency ? curves.Latency.label + ", " : ""}ms) against throughput (invocations per minute)` + (curves.Latency ? `; the job's bound: ${curves.Latency.ms} ms` : "")));
      const plotHolder = h("div", { class: "plot" });
      el.append(plotHolder);
      holder.append(el);
      const plot = new uPlot(
        {
          width: Math.max(plotHolder.clientWidth || el.clientWidth - 16, 240),
          height: 220,
          scales: { x: { time: false } },
          series: [{ label: "invocations / min" }, ...candidates.map((c, i) => ({ label: label(c.Candidate), stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true, points: { show: true, size: 6, fill: COLORS[i % COLORS.length] } }))],
          axes: [{}, { size: 56 }],
        },
        [xs, ...columns],
        plotHolder,
      );
      entry = { el, plot, state: {}, series: candidates.length };
      charts.set("load-curves", entry);
    } else entry.plot.setData([xs, ...columns]);
    entry.el.setAttribute("data-points", String(points));
    entry.el.setAttribute("data-candidates", String(candidates.length));
  }

  function listPage(title, id, target, key, nameKey, detail) {
    main.replaceChildren(h("h1", {}, title), section(id, null, h("p", { class: "muted" }, "Loading…")));
    return async () => {
      const items = await listAll(SM + target, { MaxResults: 100, SortBy: "CreationTime", SortOrder: "Descending" }, key);
      const arnKey = nameKey.replace(/Name$/, "Arn");
      fill(id, table(["Name", "Created", "ARN"], items.map((m) => [link(`#/${detail}/${enc(m[nameKey])}`, m[nameKey]), when(m.CreationTime), h("span", { class: "muted" }, m[arnKey] || "")]), "None yet."));
    };
  }

  function detailPage(title, back, backTitle, target, params) {
    main.replaceChildren(h("p", {}, link(back, "← " + backTitle)), h("h1", {}, title), section("detail", null, h("p", { class: "muted" }, "Loading…")));
    return async () => {
      const answer = await call(SM + target, params);
      fill("detail", h("pre", {}, JSON.stringify(answer, null, 2)));
    };
  }

  // --- routing and polling -----------------------------------------------------------

  function route() {
    const [path, query] = location.hash.replace(/^#/, "").split("?");
    const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    const params = new URLSearchParams(query || "");
    const current = { endpoint: "endpoints", model: "models", "endpoint-config": "endpoint-configs", recommendation: "recommendations" }[parts[0]] || parts[0] || "endpoints";
    for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("current", a.dataset.section === current);
    switch (parts[0]) {
      case "endpoint":
        return endpointPage(parts[1], params.get("window") || "1h");
      case "transform-jobs":
        return transformJobsPage();
      case "models":
        return listPage("Models", "models", "ListModels", "Models", "ModelName", "model");
      case "model":
        return detailPage(parts[1], "#/models", "Models", "DescribeModel", { ModelName: parts[1] });
      case "recommendations":
        return recommendationsPage();
      case "recommendation":
        return recommendationPage(parts[1]);
      case "endpoint-configs":
        return listPage("Endpoint configs", "endpoint-configs", "ListEndpointConfigs", "EndpointConfigs", "EndpointConfigName", "endpoint-config");
      case "endpoint-config":
        return detailPage(parts[1], "#/endpoint-configs", "Endpoint configs", "DescribeEndpointConfig", { EndpointConfigName: parts[1] });
      default:
        return endpointsPage();
    }
  }

  async function show() {
    const mine = ++generation;
    clearTimeout(timer);
    dropCharts();
    const refresh = await route();
    const tick = async () => {
      if (mine !== generation) return;
      try {
        await refresh();
        if (mine !== generation) return;
        footer.className = "";
        footer.textContent = "Updated " + new Date().toLocaleTimeString() + " · refreshes every " + POLL_MS / 1000 + " s";
        document.body.dataset.refreshed = String((Number(document.body.dataset.refreshed) || 0) + 1);
      } catch (error) {
        if (mine !== generation) return;
        footer.className = "failed";
        footer.textContent = "Refresh failed: " + error.message;
        console.error("console refresh failed:", error.message);
      }
      timer = setTimeout(tick, POLL_MS);
    };
    tick();
  }

  window.addEventListener("hashchange", show);
  show();
})();
