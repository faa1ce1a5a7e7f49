// Stockpile's dashboard: reads the JSON API of its own origin and shows prices, jobs, tracked
// symbols and the AlphaVantage budget. Every value from the server is inserted as text
// (textContent, text nodes), never as HTML. The API token lives only in this tab's
// sessionStorage and travels only in the Authorization header.
"use strict";

(function () {
  const TOKEN_KEY = "stockpile.apiToken";
  const THEME_KEY = "stockpile.theme";
  const JOBS_EVERY_MS = 1000;
  const BUDGET_EVERY_MS = 5000;
  const SYMBOLS_EVERY_MS = 10000;
  const JOBS_SHOWN = 20;
  const RANGE_MONTHS = { "1M": 1, "3M": 3, "1Y": 12, "5Y": 60 };

  const $ = (id) => document.getElementById(id);

  // ---- DOM helpers: text only -------------------------------------------------------------

  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setStatus(node, text, kind) {
    node.textContent = text || "";
    node.dataset.kind = kind || "";
    node.hidden = !text;
  }

  function when(iso) {
    return iso ? iso.replace("T", " ").replace("Z", " UTC") : "—";
  }

  // A table cell for a UTC timestamp: short, the full value as its tooltip.
  function timeCell(iso) {
    const cell = el("td", "time", iso ? iso.slice(5, 16).replace("T", " ") : "—");
    if (iso) cell.title = when(iso);
    return cell;
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (method !== "GET") {
      const token = sessionStorage.getItem(TOKEN_KEY);
      if (token) headers.Authorization = "Bearer " + token;
    }
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
        credentials: "omit",
      });
    } catch (_err) {
      throw new ApiError(0, "Cannot reach the Stockpile API.");
    }
    let payload = null;
    try {
      payload = await response.json();
    } catch (_err) {
      payload = null;
    }
    if (!response.ok) {
      const reason = payload && payload.info && payload.info.error;
      throw new ApiError(response.status, reason || `The API answered ${response.status}.`);
    }
    return payload;
  }

  function describe(error) {
    if (!(error instanceof ApiError)) return String(error);
    if (error.status === 401) {
      return `Not allowed (401): ${error.message} Set the right API token and try again.`;
    }
    return error.status ? `${error.message} (HTTP ${error.status})` : error.message;
  }

  // ---- Token ------------------------------------------------------------------------------

  function showTokenState() {
    const set = Boolean(sessionStorage.getItem(TOKEN_KEY));
    $("token-state").textContent = set ? "Token: set for this tab" : "Token: not set";
    $("token-forget").hidden = !set;
  }

  // Resolves true once a token is stored, false when the user cancels.
  function askForToken() {
    const dialog = $("token-dialog");
    const input = $("token-input");
    return new Promise((resolve) => {
      const finish = (saved) => {
        input.value = "";
        dialog.removeEventListener("close", onClose);
        showTokenState();
        resolve(saved);
      };
      const onClose = () => finish(Boolean(sessionStorage.getItem(TOKEN_KEY)) && dialog.returnValue === "save");
      dialog.addEventListener("close", onClose);
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
    });
  }

  function setupToken() {
    $("token-form").addEventListener("submit", (event) => {
      const value = $("token-input").value.trim();
      $("token-input").value = "";
      if (!value) {
        event.preventDefault();
        return;
      }
      sessionStorage.setItem(TOKEN_KEY, value);
    });
    $("token-cancel").addEventListener("click", () => {
      $("token-input").value = "";
      $("token-dialog").close("cancel");
    });
    $("token-set").addEventListener("click", () => askForToken());
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
    });
    showTokenState();
  }

  // A write: asks for the token first when none is stored.
  async function write(method, path, body) {
    if (!sessionStorage.getItem(TOKEN_KEY) && !(await askForToken())) {
      throw new ApiError(0, "No API token given: nothing was sent.");
    }
    return api(method, path, body);
  }

  // ---- Theme ------------------------------------------------------------------------------

  function currentTheme() {
    const chosen = localStorage.getItem(THEME_KEY);
    if (chosen === "dark" || chosen === "light") return chosen;
    return window.matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
  }

  function applyTheme() {
    document.documentElement.dataset.theme = currentTheme();
    chartView.applyTheme();
  }

  // ---- Chart ------------------------------------------------------------------------------

  const chartView = {
    chart: null,
    candles: null,
    volume: null,
    bars: [],
    symbol: null,
    range: "ALL",
    loadId: 0,

    colors() {
      const style = getComputedStyle(document.documentElement);
      return {
        text: style.getPropertyValue("--text").trim(),
        background: style.getPropertyValue("--panel").trim(),
        grid: style.getPropertyValue("--grid").trim(),
      };
    },

    create() {
      const LC = window.LightweightCharts;
      const c = this.colors();
      this.chart = LC.createChart($("chart"), {
        autoSize: true,
        // The logo injects a <style> element, which the page's CSP refuses; the page credits
        // TradingView with a link under the chart instead, as the library's licence asks.
        layout: { background: { color: c.background }, textColor: c.text, attributionLogo: false },
        grid: { vertLines: { color: c.grid }, horzLines: { color: c.grid } },
        crosshair: { mode: LC.CrosshairMode.Normal },
        timeScale: { borderVisible: false, lockVisibleTimeRangeOnResize: true },
        rightPriceScale: { borderVisible: false },
      });
      this.candles = this.chart.addSeries(LC.CandlestickSeries, {
        upColor: "#26a69a",
        downColor: "#ef5350",
        wickUpColor: "#26a69a",
        wickDownColor: "#ef5350",
        borderVisible: false,
      });
      this.candles.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.28 } });
      this.volume = this.chart.addSeries(LC.HistogramSeries, {
        priceFormat: { type: "volume" },
        priceScaleId: "volume",
        lastValueVisible: false,
        priceLineVisible: false,
      });
      this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.78, bottom: 0 } });
      this.chart.subscribeCrosshairMove((param) => this.showLegend(param));
    },

    applyTheme() {
      if (!this.chart) return;
      const c = this.colors();
      this.chart.applyOptions({
        layout: { background: { color: c.background }, textColor: c.text },
        grid: { vertLines: { color: c.grid }, horzLines: { color: c.grid } },
      });
    },

    showLegend(param) {
      const legend = $("legend");
      let bar = null;
      if (param && param.time && param.seriesData) {
        const candle = param.seriesData.get(this.candles);
        const vol = param.seriesData.get(this.volume);
        if (candle) bar = { time: param.time, ...candle, volume: vol ? vol.value : null };
      }
      if (!bar && this.bars.length) bar = this.bars[this.bars.length - 1];
      legend.replaceChildren();
      if (!bar) return;
      legend.append(el("strong", null, this.symbol), " ", String(bar.time));
      for (const [label, value] of [
        ["O", bar.open],
        ["H", bar.high],
        ["L", bar.low],
        ["C", bar.close],
        ["V", bar.volume === null ? "—" : Number(bar.volume).toLocaleString("en-US")],
      ]) {
        legend.append(" ", el("span", "legend-label", label), " ", el("span", "legend-value", value));
      }
    },

    async load(symbol) {
      const id = ++this.loadId;
      this.symbol = symbol;
      const chartNode = $("chart");
      chartNode.dataset.state = "loading";
      delete chartNode.dataset.bars;
      setStatus($("chart-status"), `Loading prices of ${symbol}…`, "loading");
      let text;
      try {
        const response = await fetch(
          "/api/financial_data.csv?symbol=" + encodeURIComponent(symbol),
          { cache: "no-store", credentials: "omit" },
        );
        if (!response.ok) {
          let reason = `The API answered ${response.status}.`;
          try {
            reason = (await response.json()).info.error || reason;
          } catch (_err) { /* not the envelope */ }
          throw new ApiError(response.status, reason);
        }
        text = await response.text();
      } catch (error) {
        if (id !== this.loadId) return;
        chartNode.dataset.state = "error";
        setStatus($("chart-status"), `Prices of ${symbol} could not be loaded: ${describe(error)}`, "error");
        return;
      }
      if (id !== this.loadId) return;
      this.show(parseCsv(text));
    },

    show(bars) {
      this.bars = bars;
      const chartNode = $("chart");
      this.candles.setData(bars);
      this.volume.setData(
        bars.map((b) => ({
          time: b.time,
          value: b.volume,
          color: b.close >= b.open ? "rgba(38,166,154,0.45)" : "rgba(239,83,80,0.45)",
        })),
      );
      chartNode.dataset.bars = String(this.candles.data().length);
      if (!bars.length) {
        chartNode.dataset.state = "empty";
        setStatus($("chart-status"), `No prices stored for ${this.symbol} yet — refresh it.`, "empty");
        $("refresh-symbol").value = this.symbol;
        $("legend").replaceChildren();
        $("stats").replaceChildren();
        return;
      }
      setStatus($("chart-status"), "", "");
      this.applyRange();
      this.showLegend(null);
      // Drawn: lightweight-charts paints on the next animation frame; the one after follows it.
      requestAnimationFrame(() =>
        requestAnimationFrame(() => {
          chartNode.dataset.state = "drawn";
          chartNode.dataset.drawnAt = String(performance.now());
        }),
      );
    },

    setRange(range) {
      this.range = range;
      for (const button of document.querySelectorAll(".ranges button")) {
        button.classList.toggle("active", button.dataset.range === range);
        button.setAttribute("aria-pressed", String(button.dataset.range === range));
      }
      if (this.bars.length) this.applyRange();
    },

    applyRange() {
      const last = this.bars[this.bars.length - 1].time;
      let first = this.bars[0].time;
      const months = RANGE_MONTHS[this.range];
      if (months) {
        const start = new Date(last + "T00:00:00Z");
        start.setUTCMonth(start.getUTCMonth() - months);
        const from = start.toISOString().slice(0, 10);
        if (from > first) first = from;
        this.chart.timeScale().setVisibleRange({ from: first, to: last });
      } else {
        this.chart.timeScale().fitContent();
      }
      $("chart").dataset.range = this.range;
      loadStatistics(this.symbol, first, last);
    },
  };

  function parseCsv(text) {
    // symbol,date,open_price,high_price,low_price,close_price,volume — numbers only, no quoting.
    const lines = text.split("\n");
    const bars = [];
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i].trim();
      if (!line) continue;
      const f = line.split(",");
      bars.push({
        time: f[1],
        open: Number(f[2]),
        high: Number(f[3]),
        low: Number(f[4]),
        close: Number(f[5]),
        volume: Number(f[6]),
      });
    }
    return bars;
  }

  let statisticsId = 0;
  async function loadStatistics(symbol, start, end) {
    const id = ++statisticsId;
    const stats = $("stats");
    stats.dataset.state = "loading";
    const query = new URLSearchParams({ symbol, start_date: start, end_date: end });
    let rows;
    try {
      const data = (await api("GET", "/api/statistics?" + query)).data;
      rows = [
        ["Range", `${data.start_date} → ${data.end_date}`],
        ["Average open", data.average_daily_open_price.toFixed(2)],
        ["Average close", data.average_daily_close_price.toFixed(2)],
        ["Average volume", data.average_daily_volume.toLocaleString("en-US")],
      ];
      stats.dataset.start = data.start_date;
      stats.dataset.end = data.end_date;
    } catch (error) {
      rows = [["Statistics", describe(error)]];
    }
    if (id !== statisticsId) return;
    stats.replaceChildren();
    for (const [term, value] of rows) stats.append(el("div", null, el("dt", null, term), el("dd", null, value)));
    stats.dataset.state = "ready";
  }

  // ---- Symbol picker ----------------------------------------------------------------------

  let knownSymbols = [];

  function updatePicker(tracked, stored) {
    const names = [...new Set([...tracked, ...stored])].sort();
    if (names.join(",") === knownSymbols.join(",")) return;
    knownSymbols = names;
    const select = $("symbol-select");
    const current = chartView.symbol;
    select.replaceChildren();
    for (const name of names) {
      const option = el("option", null, name);
      option.value = name;
      select.append(option);
    }
    if (current && names.includes(current)) {
      select.value = current;
    } else if (!current && names.length) {
      const first = names.includes("IBM") ? "IBM" : names[0];
      select.value = first;
      chartView.load(first);
    } else if (!names.length) {
      setStatus($("chart-status"), "No symbol is tracked or stored yet — track or refresh one.", "empty");
    }
  }

  // A table's rows are rebuilt only when its data changed, not on every poll: rows that stay
  // the same keep the reader's selection and a button's focus.
  const shownData = new Map();
  function showRows(tableId, items, rowFor) {
    const text = JSON.stringify(items);
    if (shownData.get(tableId) === text) return;
    shownData.set(tableId, text);
    $(tableId).tBodies[0].replaceChildren(...items.map(rowFor));
  }

  // A failure or error as the API gives it ({code, message}), or a dash.
  function problemCell(problem) {
    const content = problem
      ? el("span", "error-text", el("code", null, problem.code), " ", problem.message)
      : "—";
    return el("td", null, content);
  }

  // ---- Tracked symbols --------------------------------------------------------------------

  let storedSymbols = [];

  async function refreshSymbols() {
    let tracked;
    try {
      const [trackedBody, storedBody] = await Promise.all([
        api("GET", "/symbols?limit=1000"),
        api("GET", "/api/stored_symbols?limit=1000"),
      ]);
      tracked = trackedBody.data;
      storedSymbols = storedBody.data.map((s) => s.symbol);
      setStatus($("symbols-status"), tracked.length ? "" : "No symbol is tracked: beat refreshes nothing.", "empty");
    } catch (error) {
      setStatus($("symbols-status"), `Tracked symbols could not be loaded: ${describe(error)}`, "error");
      return;
    }
    updatePicker(tracked.map((s) => s.symbol), storedSymbols);
    showRows("symbols-table", tracked, symbolRow);
  }

  function symbolRow(s) {
    const lag = s.lagging
      ? el("span", "badge badge-warn", `behind (market: ${s.last_trading_day})`)
      : el("span", "badge badge-ok", "current");
    const stop = el("button", "small", "Stop tracking");
    stop.type = "button";
    stop.addEventListener("click", () => untrack(s.symbol));
    const row = el(
      "tr",
      null,
      el("td", "symbol", s.symbol),
      el("td", "time", s.first_date || "—"),
      el("td", "time", s.last_date || "—"),
      el("td", "num", s.rows.toLocaleString("en-US")),
      timeCell(s.last_refreshed_at),
      el("td", null, lag),
      problemCell(s.failure),
      el("td", null, stop),
    );
    row.dataset.symbol = s.symbol;
    return row;
  }

  async function untrack(symbol) {
    const message = $("track-message");
    try {
      await write("DELETE", "/symbols/" + encodeURIComponent(symbol));
      setStatus(message, `${symbol} is no longer tracked (its prices stay).`, "ok");
    } catch (error) {
      setStatus(message, describe(error), "error");
    }
    refreshSymbols();
  }

  // A form with one symbol field whose submit does one write: `action(symbol)` answers the
  // success message; failures show the API's words. `after` runs either way.
  function symbolForm(name, pending, action, after) {
    $(`${name}-form`).addEventListener("submit", async (event) => {
      event.preventDefault();
      const input = $(`${name}-symbol`);
      const message = $(`${name}-message`);
      const symbol = input.value.trim();
      setStatus(message, pending(symbol), "loading");
      try {
        setStatus(message, await action(symbol, message), "ok");
        input.value = "";
      } catch (error) {
        setStatus(message, describe(error), "error");
      }
      after();
    });
  }

  function setupTrackForm() {
    symbolForm(
      "track",
      (symbol) => `Tracking ${symbol}…`,
      async (symbol) => {
        const data = (await write("PUT", "/symbols/" + encodeURIComponent(symbol))).data;
        return `${data.symbol} is tracked.${data.job ? " A refresh job started." : ""}`;
      },
      () => {
        refreshSymbols();
        refreshJobs();
      },
    );
  }

  // ---- Jobs -------------------------------------------------------------------------------

  const jobStatusSeen = new Map();

  async function refreshJobs() {
    let body;
    try {
      body = await api("GET", `/jobs?limit=${JOBS_SHOWN}`);
    } catch (error) {
      setStatus($("jobs-status"), `Jobs could not be loaded: ${describe(error)}`, "error");
      return;
    }
    const jobs = body.data;
    // Set on every answer, so an earlier error goes away once the API answers again.
    setStatus($("jobs-status"), jobs.length ? "" : "No jobs yet: refresh a symbol to start one.", "empty");
    showRows("jobs-table", jobs, jobRow);
    for (const job of jobs) {
      const before = jobStatusSeen.get(job.id);
      jobStatusSeen.set(job.id, job.status);
      if (before && before !== job.status && job.status === "succeeded") {
        // New prices: show them, and the symbol's new coverage.
        if (job.symbol === chartView.symbol) chartView.load(job.symbol);
        refreshSymbols();
      }
    }
  }

  function jobRow(job) {
    const row = el(
      "tr",
      null,
      el("td", "symbol", job.symbol),
      el("td", null, el("span", `badge badge-${job.status}`, job.status)),
      el("td", "num", job.attempts),
      timeCell(job.created_at),
      timeCell(job.not_before),
      el("td", "detail", job.detail || "—"),
      problemCell(job.error),
      el("td", "num", job.rows_written === null ? "—" : job.rows_written.toLocaleString("en-US")),
    );
    row.dataset.jobId = job.id;
    row.dataset.status = job.status;
    return row;
  }

  function setupRefreshForm() {
    symbolForm(
      "refresh",
      (symbol) => `Asking for a refresh of ${symbol}…`,
      async (symbol, message) => {
        const job = (await write("POST", "/jobs", { symbol })).data;
        jobStatusSeen.set(job.id, job.status);
        message.dataset.jobId = job.id;
        return `Job for ${job.symbol} is ${job.status}.`;
      },
      refreshJobs,
    );
  }

  // ---- Budget -----------------------------------------------------------------------------

  function windowName(seconds) {
    for (const [unit, length] of [["day", 86400], ["hour", 3600], ["minute", 60], ["second", 1]]) {
      if (seconds % length === 0) {
        const count = seconds / length;
        return count === 1 ? `per ${unit}` : `per ${count} ${unit}s`;
      }
    }
    return `per ${seconds} s`;
  }

  let budgetText = "";
  async function refreshBudget() {
    let budget;
    try {
      budget = (await api("GET", "/api/budget")).data;
    } catch (error) {
      setStatus($("budget-status"), `The budget could not be loaded: ${describe(error)}`, "error");
      return;
    }
    setStatus($("budget-status"), "", "");
    const text = JSON.stringify(budget);
    if (text === budgetText) return;
    budgetText = text;
    const windows = $("budget-windows");
    windows.replaceChildren();
    for (const w of budget.windows) {
      const meter = el("meter");
      meter.max = w.limit;
      meter.value = w.used;
      meter.high = w.limit * 0.8;
      const next = w.next_free_at ? `next call at ${when(w.next_free_at)}` : "a call is possible now";
      const item = el("li", null, el("span", "window-name", `${w.used} / ${w.limit} ${windowName(w.seconds)}`), meter, el("span", "muted", next));
      item.dataset.seconds = String(w.seconds);
      item.dataset.used = String(w.used);
      windows.append(item);
    }
    const cooldown = $("budget-cooldown");
    if (budget.cooldown) {
      cooldown.replaceChildren(el("span", "badge badge-warn", "cooldown"), ` until ${when(budget.cooldown.until)}: `, budget.cooldown.reason);
    } else {
      cooldown.replaceChildren(el("span", "muted", "No cooldown."));
    }
    const today = $("budget-today");
    today.replaceChildren();
    const outcomes = Object.entries(budget.calls_today);
    if (!outcomes.length) today.append(el("li", "muted", "No call today."));
    for (const [outcome, count] of outcomes) {
      const item = el("li", null, el("code", null, outcome), ` ${count}`);
      item.dataset.outcome = outcome;
      item.dataset.count = String(count);
      today.append(item);
    }
  }

  // ---- Polling ----------------------------------------------------------------------------

  // Each poll runs again only after the previous one finished; a hidden tab polls nothing.
  function every(ms, task) {
    const run = async () => {
      if (!document.hidden) {
        try {
          await task();
        } catch (_err) { /* each task shows its own errors */ }
      }
      setTimeout(run, ms);
    };
    run();
  }

  function start() {
    setupToken();
    setupRefreshForm();
    setupTrackForm();
    chartView.create();
    applyTheme();
    $("theme-toggle").addEventListener("click", () => {
      localStorage.setItem(THEME_KEY, currentTheme() === "dark" ? "light" : "dark");
      applyTheme();
    });
    $("symbol-select").addEventListener("change", (event) => chartView.load(event.target.value));
    for (const button of document.querySelectorAll(".ranges button")) {
      button.addEventListener("click", () => chartView.setRange(button.dataset.range));
    }
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden) {
        refreshJobs();
        refreshBudget();
      }
    });
    every(JOBS_EVERY_MS, refreshJobs);
    every(BUDGET_EVERY_MS, refreshBudget);
    every(SYMBOLS_EVERY_MS, refreshSymbols);
  }

  document.addEventListener("DOMContentLoaded", start);
})();
