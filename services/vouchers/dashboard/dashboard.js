/*
 * The programme dashboard (issue #6). Reads only the vouchers service's aggregates API
 * (/v1/aggregates/...) with the bearer token it was given; draws with Chart.js (bundled).
 *
 * The token comes from the URL fragment (/dashboard#token=...: never sent to a server; removed from
 * the address bar at once and kept in sessionStorage, i.e. for this tab only) or from the form.
 * Language: Chinese by default, English on the toggle; the choice is kept in localStorage.
 * Money arrives in integer fen and is shown in yuan.
 *
 * The page's state is in <body data-state>: login | loading | ready | error (the browser test waits on it).
 */
(function () {
  "use strict";

  var TOKEN_KEY = "longgang-dashboard-token";
  var LANG_KEY = "longgang-dashboard-lang";
  var YEAR_KEY = "longgang-dashboard-year";
  var FIRST_YEAR = 2024; // the measures' parameters take effect on 2024-01-01
  var TIME_ZONE = "Asia/Shanghai"; // aggregates count years and months in Shenzhen time
  var REFRESH_MS = 60000;
  var DETAIL_SCOPES = ["dashboard:detail", "officer", "approver", "admin", "auditor"];

  var MEASURES = {
    M1: ["算力券", "Compute vouchers"],
    M2: ["自研大模型", "Self-developed models"],
    M3: ["模型券", "Model vouchers"],
    M4: ["AI 软件应用示范", "AI application demos"],
    M5: ["“四上”企业数字化转型", "Digital transformation"],
    M6: ["数字化转型标杆", "Benchmark projects"],
    M7: ["AI 标准", "AI standards"],
    M8: ["重点软件企业", "Key software firms"],
    M9: ["成长奖励", "Growth rewards"],
    M10: ["首版次软件", "First-version software"],
    M11: ["租金补贴", "Rent subsidies"],
    M12: ["公共平台", "Public platforms"],
    M13: ["重大活动", "Major events"],
    M14: ["人才", "Talent"],
    M15: ["投资", "Investment"]
  };

  // the automatic decision on submission, and the status now (the statuses partition what was submitted)
  var OUTCOMES = ["eligible", "ineligible", "needs_review"];
  var STATUSES = ["approved", "reviewed", "in_review", "rejected", "ineligible_closed"];
  var STATUS_COLOURS = {
    approved: "#2e7d32",
    reviewed: "#7cb342",
    in_review: "#fbc02d",
    rejected: "#c62828",
    ineligible_closed: "#8d6e63"
  };

  var TEXT = {
    zh: {
      title: "龙岗区人工智能扶持资金看板",
      subtitle: "算力券、模型券与资助的发放、核销和预算使用情况",
      year: "年度",
      refresh: "刷新",
      forget: "退出",
      langButton: "English",
      loginTitle: "需要访问令牌",
      loginHelp: "本页面只显示汇总数据，需要具有 dashboard 角色的访问令牌。请在下方粘贴令牌，或打开 /dashboard#token=…",
      tokenLabel: "访问令牌",
      tokenSubmit: "查看看板",
      keyFigures: "关键指标",
      kpiIssued: "已发放券额",
      kpiRedeemed: "已核销",
      kpiSettled: "已结算",
      kpiExpired: "已过期",
      kpiRemaining: "券内余额",
      kpiGranted: "已拨付资助",
      kpiBudget: "预算使用",
      ofIssued: "占发放 {pct}",
      ofRedeemed: "占核销 {pct}",
      usedOfBudget: "{used} / {budget}",
      noBudget: "未设预算",
      overBudget: "超出预算：{measures}",
      chartMonthly: "每月发放与核销",
      chartMeasures: "按措施",
      chartBudget: "各措施预算与已用",
      chartHeadroom: "模型券（M3）年度上限剩余额度分布",
      chartVendors: "服务商核销排名",
      chartApplications: "本年度各措施申请（按当前状态）",
      chartQueue: "待审队列",
      topEnterprises: "金额最高的企业",
      creditCode: "统一社会信用代码",
      issued: "发放",
      redeemed: "核销",
      settled: "结算",
      expired: "过期",
      granted: "资助",
      remaining: "余额",
      budget: "预算",
      used: "已用",
      enterprises: "企业数",
      redemptions: "核销笔数",
      headroom: "剩余额度",
      headroomNote: "共 {n} 家企业，其中 {full} 家已达年度上限",
      waiting: "待审",
      oldestAge: "最久等待（{unit}）",
      ageUnits: { days: "天", hours: "小时", minutes: "分钟" },
      oldest: "最早提交",
      p50: "等待中位数",
      p90: "等待 90% 分位",
      max: "最长等待",
      submitted: "已提交",
      eligible: "符合",
      ineligible: "不符合",
      needs_review: "需人工审核",
      in_review: "审核中",
      reviewed: "已审核待批",
      approved: "已批准",
      rejected: "已驳回",
      ineligible_closed: "不符合（已结）",
      automatic: "自动判定",
      noData: "本年度暂无数据",
      loading: "正在加载…",
      asOf: "数据截至账目第 {entry} 条（投影于 {time}，尚有 {lag} 条未投影）",
      tokenExpires: "令牌有效至 {time}。",
      footer: "数据只来自汇总接口。",
      chartsBy: "图表：",
      err401: "令牌缺失、无效或已过期，请重新获取令牌。",
      err403: "此令牌的角色无权查看看板（需要 dashboard 角色）。",
      err503: "服务暂时不可用，请稍后重试。",
      errNetwork: "无法连接服务。",
      errOther: "请求失败（HTTP {status}）。",
      partial: "部分数据暂不可用：",
      colon: "：",
      section: {
        summary: "总量",
        monthly: "月度",
        budget: "预算",
        headroom: "上限余量",
        vendors: "服务商",
        applications: "申请",
        queue: "待审队列",
        top: "企业排名"
      },
      duration: { d: "天", h: "小时", m: "分钟", s: "秒" }
    },
    en: {
      title: "Longgang AI Measures — Programme Dashboard",
      subtitle: "Compute vouchers, model vouchers and grants: issued, redeemed and budget used",
      year: "Year",
      refresh: "Refresh",
      forget: "Sign out",
      langButton: "中文",
      loginTitle: "An access token is needed",
      loginHelp: "This page shows aggregate figures only and needs an access token with the dashboard role. Paste one below, or open /dashboard#token=…",
      tokenLabel: "Access token",
      tokenSubmit: "Open the dashboard",
      keyFigures: "Key figures",
      kpiIssued: "Vouchers issued",
      kpiRedeemed: "Redeemed",
      kpiSettled: "Settled",
      kpiExpired: "Expired",
      kpiRemaining: "Remaining on vouchers",
      kpiGranted: "Grants paid",
      kpiBudget: "Budget used",
      ofIssued: "{pct} of issued",
      ofRedeemed: "{pct} of redeemed",
      usedOfBudget: "{used} of {budget}",
      noBudget: "no budget set",
      overBudget: "over budget: {measures}",
      chartMonthly: "Issued and redeemed per month",
      chartMeasures: "By measure",
      chartBudget: "Budget and used, per measure",
      chartHeadroom: "Model vouchers (M3): headroom under the annual ceiling",
      chartVendors: "Vendors by amount redeemed",
      chartApplications: "Applications this year per measure, by status now",
      chartQueue: "Review queue",
      topEnterprises: "Top enterprises by amount",
      creditCode: "Credit code",
      issued: "Issued",
      redeemed: "Redeemed",
      settled: "Settled",
      expired: "Expired",
      granted: "Granted",
      remaining: "Remaining",
      budget: "Budget",
      used: "Used",
      enterprises: "Enterprises",
      redemptions: "Redemptions",
      headroom: "Headroom",
      headroomNote: "Enterprises with this ceiling: {n}; at the ceiling: {full}",
      waiting: "Waiting",
      oldestAge: "Oldest waiting ({unit})",
      ageUnits: { days: "days", hours: "hours", minutes: "minutes" },
      oldest: "Oldest submitted",
      p50: "Median wait",
      p90: "90th percentile wait",
      max: "Longest wait",
      submitted: "Submitted",
      eligible: "Eligible",
      ineligible: "Ineligible",
      needs_review: "Needs review",
      in_review: "In review",
      reviewed: "Reviewed, awaiting approval",
      approved: "Approved",
      rejected: "Rejected",
      ineligible_closed: "Ineligible (closed)",
      automatic: "Automatic decision",
      noData: "No data for this year",
      loading: "Loading…",
      asOf: "As of ledger entry {entry} (projected {time}; {lag} entries not yet projected)",
      tokenExpires: "Token valid until {time}.",
      footer: "Figures come from the aggregates API only.",
      chartsBy: "Charts: ",
      err401: "The token is missing, invalid or expired: get a new one.",
      err403: "This token's role may not see the dashboard (it needs the dashboard role).",
      err503: "The service is unavailable for now; try again later.",
      errNetwork: "The service cannot be reached.",
      errOther: "The request failed (HTTP {status}).",
      partial: "Some figures are unavailable: ",
      colon: ": ",
      section: {
        summary: "totals",
        monthly: "months",
        budget: "budget",
        headroom: "ceiling headroom",
        vendors: "vendors",
        applications: "applications",
        queue: "review queue",
        top: "top enterprises"
      },
      duration: { d: "d", h: "h", m: "min", s: "s" }
    }
  };

  var COLOURS = {
    issued: "#1565c0",
    redeemed: "#c62828",
    settled: "#2e7d32",
    expired: "#8d6e63",
    granted: "#f9a825",
    remaining: "#90a4ae",
    budget: "#cfd8dc",
    used: "#c62828",
    headroom: "#6a1b9a",
    waiting: "#ef6c00",
    age: "#455a64"
  };

  var state = {
    lang: "zh",
    token: null,
    year: null,
    data: null,
    errors: {},
    charts: {},
    notice: null,
    sequence: 0
  };

  // --- small helpers ------------------------------------------------------------------------

  function $(selector, root) {
    return (root || document).querySelector(selector);
  }

  function $all(selector, root) {
    return Array.prototype.slice.call((root || document).querySelectorAll(selector));
  }

  function storage(kind) {
    try {
      return kind === "session" ? window.sessionStorage : window.localStorage;
    } catch (e) {
      return null; // storage disabled: the page still works, it just forgets
    }
  }

  function remember(kind, key, value) {
    var store = storage(kind);
    if (!store) return;
    if (value === null || value === undefined) store.removeItem(key);
    else store.setItem(key, String(value));
  }

  function recall(kind, key) {
    var store = storage(kind);
    return store ? store.getItem(key) : null;
  }

  function t(key, params) {
    var table = TEXT[state.lang];
    var text = key.split(".").reduce(function (node, part) {
      return node && node[part];
    }, table);
    if (typeof text !== "string") text = key;
    return text.replace(/\{(\w+)\}/g, function (match, name) {
      return params && params[name] !== undefined ? String(params[name]) : match;
    });
  }

  /** Numbers: zh-CN (¥1,234.00, ¥120万) or en-US (CN¥1,234.00, ¥1.2M); dates: zh-CN or en-GB (day first). */
  function locale() {
    return state.lang === "zh" ? "zh-CN" : "en-US";
  }

  function dateLocale() {
    return state.lang === "zh" ? "zh-CN" : "en-GB";
  }

  function yuan(fen) {
    return Number(fen || 0) / 100;
  }

  function money(fen) {
    return new Intl.NumberFormat(locale(), {
      style: "currency",
      currency: "CNY",
      currencyDisplay: "symbol",
      minimumFractionDigits: 2,
      maximumFractionDigits: 2
    }).format(yuan(fen));
  }

  /** Axis ticks: 1,200,000 yuan is "¥120万" in Chinese and "¥1.2M" in English. */
  function compactYuan(value) {
    var number = new Intl.NumberFormat(locale(), { notation: "compact", maximumFractionDigits: 1 }).format(value);
    return "¥" + number;
  }

  function count(value) {
    return new Intl.NumberFormat(locale()).format(Number(value || 0));
  }

  function percent(ratio) {
    return new Intl.NumberFormat(locale(), { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 2 }).format(
      Number(ratio || 0)
    );
  }

  function instant(value) {
    if (!value) return "—";
    var date = typeof value === "number" ? new Date(value) : new Date(String(value));
    if (isNaN(date.getTime())) return String(value);
    return new Intl.DateTimeFormat(dateLocale(), {
      timeZone: TIME_ZONE,
      year: "numeric",
      month: state.lang === "zh" ? "2-digit" : "short",
      day: "2-digit",
      hour: "2-digit",
      minute: "2-digit",
      second: "2-digit",
      hour12: false
    }).format(date);
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    var s = Math.max(0, Math.round(Number(seconds)));
    var units = TEXT[state.lang].duration;
    var space = state.lang === "zh" ? "" : " ";
    var days = Math.floor(s / 86400);
    var hours = Math.floor((s % 86400) / 3600);
    var minutes = Math.floor((s % 3600) / 60);
    if (days > 0) return days + space + units.d + (hours ? " " + hours + space + units.h : "");
    if (hours > 0) return hours + space + units.h + (minutes ? " " + minutes + space + units.m : "");
    if (minutes > 0) return minutes + space + units.m;
    return s + space + units.s;
  }

  function measureLabel(code) {
    var names = MEASURES[code];
    if (!names) return String(code);
    return code + " " + (state.lang === "zh" ? names[0] : names[1]);
  }

  function monthLabels() {
    var format = new Intl.DateTimeFormat(dateLocale(), { month: "short", timeZone: "UTC" });
    var labels = [];
    for (var month = 0; month < 12; month += 1) labels.push(format.format(new Date(Date.UTC(2024, month, 15))));
    return labels;
  }

  function currentYear() {
    return Number(new Intl.DateTimeFormat("en-GB", { timeZone: TIME_ZONE, year: "numeric" }).format(new Date()));
  }

  function setState(value) {
    document.body.setAttribute("data-state", value);
  }

  // --- the token -------------------------------------------------------------------------------

  /** A token in the fragment (#token=...) is taken and removed from the address bar at once. */
  function takeTokenFromFragment() {
    if (!window.location.hash || window.location.hash.length < 2) return;
    var params = new URLSearchParams(window.location.hash.slice(1));
    var token = params.get("token");
    if (token && token.trim()) {
      state.token = token.trim();
      remember("session", TOKEN_KEY, state.token);
    }
    window.history.replaceState(null, "", window.location.pathname + window.location.search);
  }

  /** The token's claims, read (not verified: the API verifies) to show its expiry and pick what to ask for. */
  function claims() {
    if (!state.token) return {};
    try {
      var part = state.token.split(".")[1] || "";
      var base64 = part.replace(/-/g, "+").replace(/_/g, "/");
      while (base64.length % 4) base64 += "=";
      var parsed = JSON.parse(window.atob(base64));
      return parsed && typeof parsed === "object" ? parsed : {};
    } catch (e) {
      return {};
    }
  }

  function scopes() {
    var scope = claims().scope;
    return typeof scope === "string" ? scope.split(" ") : [];
  }

  function tokenExpired() {
    var exp = claims().exp;
    return typeof exp === "number" && exp * 1000 <= Date.now();
  }

  function forgetToken() {
    state.token = null;
    state.data = null;
    remember("session", TOKEN_KEY, null);
    destroyCharts();
  }

  // --- the API -----------------------------------------------------------------------------------

  function ApiError(status, code, detail) {
    this.status = status;
    this.code = code;
    this.detail = detail;
  }

  function api(path, params) {
    var url = new URL("v1/aggregates/" + path, document.baseURI);
    Object.keys(params || {}).forEach(function (name) {
      if (params[name] !== null && params[name] !== undefined) url.searchParams.set(name, String(params[name]));
    });
    return window
      .fetch(url.toString(), {
        headers: {
          Authorization: "Bearer " + state.token,
          Accept: "application/json",
          "Accept-Language": state.lang === "zh" ? "zh-CN" : "en"
        },
        cache: "no-store",
        credentials: "omit"
      })
      .then(
        function (response) {
          if (response.ok) return response.json();
          return response
            .json()
            .catch(function () {
              return {};
            })
            .then(function (body) {
              throw new ApiError(response.status, body.code || "", body.detail || body.title || response.statusText);
            });
        },
        function (error) {
          throw new ApiError(0, "network", String(error && error.message ? error.message : error));
        }
      );
  }

  function describe(error) {
    var message;
    if (error.status === 401) message = t("err401");
    else if (error.status === 403) message = t("err403");
    else if (error.status === 503) message = t("err503");
    else if (error.status === 0) message = t("errNetwork");
    else message = t("errOther", { status: error.status });
    var code = error.status ? "HTTP " + error.status + (error.code ? " " + error.code : "") : "";
    return message + (error.detail ? " — " + error.detail : "") + (code ? " (" + code + ")" : "");
  }

  // --- showing -----------------------------------------------------------------------------------

  /** The message box: `message` is a function giving the text, so that it follows the language toggle. */
  function showStatus(message, warning) {
    state.notice = message ? { message: message, warning: Boolean(warning) } : null;
    renderStatus();
  }

  function renderStatus() {
    var box = $("#status");
    if (!state.notice) {
      box.hidden = true;
      box.textContent = "";
      return;
    }
    box.textContent = state.notice.message();
    box.classList.toggle("warning", state.notice.warning);
    box.hidden = false;
  }

  function showLogin(message) {
    $("#content").hidden = true;
    $("#login").hidden = false;
    $("#forget").hidden = true;
    $("#token-expiry").textContent = "";
    showStatus(message || null);
    setState("login");
  }

  function renderTexts() {
    document.documentElement.lang = state.lang === "zh" ? "zh-CN" : "en";
    document.title = t("title");
    $all("[data-i18n]").forEach(function (node) {
      node.textContent = t(node.getAttribute("data-i18n"));
    });
    var toggle = $("#lang");
    toggle.textContent = t("langButton");
    toggle.setAttribute("lang", state.lang === "zh" ? "en" : "zh-CN");
    var exp = claims().exp;
    $("#token-expiry").textContent = state.token && typeof exp === "number" ? t("tokenExpires", { time: instant(exp * 1000) }) : "";
    renderStatus();
  }

  function fillYears() {
    var select = $("#year");
    var last = Math.max(currentYear(), FIRST_YEAR);
    select.textContent = "";
    for (var year = last; year >= FIRST_YEAR; year -= 1) {
      var option = document.createElement("option");
      option.value = String(year);
      option.textContent = String(year);
      select.appendChild(option);
    }
    var stored = Number(recall("session", YEAR_KEY));
    state.year = stored >= FIRST_YEAR && stored <= last ? stored : last;
    select.value = String(state.year);
  }

  function setKpi(name, fen, value, note) {
    var card = $('.kpi[data-kpi="' + name + '"]');
    var valueNode = $(".value", card);
    valueNode.textContent = value;
    if (fen === null || fen === undefined) valueNode.removeAttribute("data-fen");
    else valueNode.setAttribute("data-fen", String(fen));
    $(".note", card).textContent = note || "";
  }

  function renderKpis(summary, budget) {
    var totals = summary ? summary.totals || {} : null;
    function figure(name, field, note) {
      if (!totals) return setKpi(name, null, "—", "");
      setKpi(name, totals[field] || 0, money(totals[field]), note);
    }
    var issued = totals ? totals.issued_fen || 0 : 0;
    var redeemed = totals ? totals.redeemed_fen || 0 : 0;
    figure("issued", "issued_fen", "");
    figure("redeemed", "redeemed_fen", issued ? t("ofIssued", { pct: percent(redeemed / issued) }) : "");
    figure("settled", "settled_fen", redeemed && totals ? t("ofRedeemed", { pct: percent((totals.settled_fen || 0) / redeemed) }) : "");
    figure("expired", "expired_fen", "");
    figure("remaining", "remaining_fen", "");
    figure("granted", "granted_fen", "");
    if (!budget) {
      setKpi("budget", null, "—", "");
      return;
    }
    // the share is of the measures that have a budget; the amount is all that left the budgets
    var used = 0;
    var usedBudgeted = 0;
    var total = 0;
    var over = [];
    (budget.measures || []).forEach(function (row) {
      used += committed(row);
      if (row.over_budget) over.push(measureLabel(row.measure));
      if (row.budget_fen !== null && row.budget_fen !== undefined) {
        usedBudgeted += committed(row);
        total += Number(row.budget_fen);
      }
    });
    var note = over.length ? t("overBudget", { measures: over.join(", ") }) : "";
    if (total > 0) {
      var share = t("usedOfBudget", { used: money(usedBudgeted), budget: money(total) });
      setKpi("budget", used, percent(usedBudgeted / total), note ? share + " · " + note : share);
    } else {
      setKpi("budget", used, money(used), t("noBudget"));
    }
  }

  function renderAsOf(summary) {
    var node = $("#as-of");
    var asOf = summary && summary.as_of;
    node.textContent = asOf
      ? t("asOf", { entry: count(asOf.entry_id), time: instant(asOf.projected_at), lag: count(asOf.lag_entries) })
      : "";
  }

  function destroyCharts() {
    Object.keys(state.charts).forEach(function (name) {
      state.charts[name].destroy();
    });
    state.charts = {};
  }

  /** One chart panel: an error, "no data", or the chart drawn from `config`. */
  function panel(name, error, empty, config) {
    var figure = $('[data-chart="' + name + '"]');
    var message = $(".panel-message", figure);
    if (state.charts[name]) {
      state.charts[name].destroy();
      delete state.charts[name];
    }
    message.classList.toggle("error", Boolean(error));
    if (error || empty) {
      figure.classList.add("empty");
      figure.setAttribute("data-chart-state", error ? "error" : "empty");
      message.textContent = error ? describe(error) : t("noData");
      message.hidden = false;
      return;
    }
    figure.classList.remove("empty");
    figure.setAttribute("data-chart-state", "drawn");
    message.hidden = true;
    var canvas = $("canvas", figure);
    canvas.setAttribute("aria-label", $("figcaption", figure).textContent);
    state.charts[name] = new window.Chart(canvas, config);
  }

  function moneyTooltip(context) {
    var raw = context.parsed && (context.chart.options.indexAxis === "y" ? context.parsed.x : context.parsed.y);
    return context.dataset.label + ": " + money(Math.round(Number(raw || 0) * 100));
  }

  function moneyAxis(axis) {
    var scale = { beginAtZero: true, ticks: { callback: compactYuan } };
    var scales = {};
    scales[axis] = scale;
    return scales;
  }

  function barConfig(labels, datasets, options) {
    options = options || {};
    datasets.forEach(function (set) {
      if (set.maxBarThickness === undefined) set.maxBarThickness = 48;
    });
    return {
      type: "bar",
      data: { labels: labels, datasets: datasets },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        indexAxis: options.horizontal ? "y" : "x",
        plugins: {
          legend: { display: datasets.length > 1, position: "bottom" },
          tooltip: { callbacks: options.countTooltip ? {} : { label: moneyTooltip } }
        },
        scales: options.scales || moneyAxis(options.horizontal ? "x" : "y")
      }
    };
  }

  function dataset(key, values, extra) {
    var colour = COLOURS[key] || "#607d8b";
    var base = { label: t(key), data: values, backgroundColor: colour, borderColor: colour };
    return Object.assign(base, extra || {});
  }

  function anyPositive(datasets) {
    return datasets.some(function (set) {
      return set.data.some(function (value) {
        return Number(value) > 0;
      });
    });
  }

  function renderMonthly(data, error) {
    var months = (data && data.months) || [];
    var byMonth = {};
    months.forEach(function (row) {
      byMonth[row.month] = row;
    });
    function series(field) {
      var values = [];
      for (var month = 1; month <= 12; month += 1) values.push(yuan(byMonth[month] ? byMonth[month][field] : 0));
      return values;
    }
    var datasets = [
      dataset("issued", series("issued_fen")),
      dataset("redeemed", series("redeemed_fen")),
      dataset("granted", series("granted_fen")),
      dataset("settled", series("settled_fen"), { type: "line", fill: false, tension: 0.2, pointRadius: 3 })
    ];
    panel("monthly", error, !anyPositive(datasets), barConfig(monthLabels(), datasets));
  }

  function renderMeasures(data, error) {
    var rows = ((data && data.by_measure) || []).filter(function (row) {
      return ["issued_fen", "redeemed_fen", "granted_fen", "remaining_fen", "expired_fen", "voided_fen"].some(function (field) {
        return Number(row[field] || 0) !== 0;
      });
    });
    var labels = rows.map(function (row) {
      return measureLabel(row.measure);
    });
    function series(field) {
      return rows.map(function (row) {
        return yuan(row[field]);
      });
    }
    var datasets = [
      dataset("issued", series("issued_fen")),
      dataset("redeemed", series("redeemed_fen")),
      dataset("granted", series("granted_fen")),
      dataset("remaining", series("remaining_fen"))
    ];
    panel("measures", error, !anyPositive(datasets), barConfig(labels, datasets));
  }

  // what the budget's ceiling row has committed (A2, live); the ledger's projected figure from older services
  function committed(row) {
    var value = row.committed_fen !== undefined && row.committed_fen !== null ? row.committed_fen : row.used_fen;
    return Number(value || 0);
  }

  function renderBudget(data, error) {
    var rows = (data && data.measures) || [];
    var labels = rows.map(function (row) {
      return measureLabel(row.measure);
    });
    var datasets = [
      dataset(
        "budget",
        rows.map(function (row) {
          return yuan(row.budget_fen);
        })
      ),
      dataset(
        "used",
        rows.map(function (row) {
          return yuan(committed(row));
        })
      )
    ];
    var config = barConfig(labels, datasets);
    config.options.plugins.tooltip.callbacks.footer = function (items) {
      var row = items.length ? rows[items[0].dataIndex] : null;
      return row && row.used_ratio !== undefined && row.used_ratio !== null ? t("used") + " " + percent(row.used_ratio) : "";
    };
    panel("budget", error, !anyPositive(datasets), config);
  }

  function renderHeadroom(data, error) {
    var buckets = (data && data.buckets) || [];
    var labels = buckets.map(function (bucket) {
      var from = compactYuan(yuan(bucket.from_fen));
      if (bucket.to_fen === null || bucket.to_fen === undefined) return "≥ " + from;
      return from + "–" + compactYuan(yuan(bucket.to_fen));
    });
    var datasets = [
      dataset(
        "enterprises",
        buckets.map(function (bucket) {
          return Number(bucket.enterprises || 0);
        }),
        { backgroundColor: COLOURS.headroom, borderColor: COLOURS.headroom }
      )
    ];
    var config = barConfig(labels, datasets, {
      countTooltip: true,
      scales: {
        x: { title: { display: true, text: t("headroom") } },
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: t("enterprises") } }
      }
    });
    $("#headroom-note").textContent = data && !error ? t("headroomNote", { n: count(data.enterprises), full: count(data.at_ceiling) }) : "";
    panel("headroom", error, !anyPositive(datasets), config);
  }

  function renderVendors(data, error) {
    var rows = (data && data.vendors) || [];
    var labels = rows.map(function (row) {
      return row.vendor;
    });
    var datasets = [
      dataset(
        "redeemed",
        rows.map(function (row) {
          return yuan(row.redeemed_fen);
        })
      ),
      dataset(
        "settled",
        rows.map(function (row) {
          return yuan(row.settled_fen);
        })
      )
    ];
    var config = barConfig(labels, datasets, { horizontal: true });
    config.options.plugins.tooltip.callbacks.footer = function (items) {
      var row = items.length ? rows[items[0].dataIndex] : null;
      return row ? t("redemptions") + ": " + count(row.redemptions) : "";
    };
    panel("vendors", error, !anyPositive(datasets), config);
  }

  /** Applications of the year per measure, stacked by their status now (the stack is all submitted);
   * the automatic decisions (eligible, ineligible, needs review) in the tooltip. */
  function renderApplications(data, error) {
    var rows = ((data && data.by_measure) || []).filter(function (row) {
      return Number(row.submitted || 0) > 0;
    });
    var datasets = STATUSES.map(function (key) {
      var colour = STATUS_COLOURS[key];
      return {
        label: t(key),
        data: rows.map(function (row) {
          return Number(row[key] || 0);
        }),
        backgroundColor: colour,
        borderColor: colour
      };
    });
    var labels = rows.map(function (row) {
      return measureLabel(row.measure);
    });
    var config = barConfig(labels, datasets, {
      countTooltip: true,
      scales: {
        x: { stacked: true },
        y: { stacked: true, beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: t("submitted") } }
      }
    });
    config.options.plugins.tooltip.callbacks.footer = function (items) {
      var row = items.length ? rows[items[0].dataIndex] : null;
      if (!row) return "";
      return [
        t("submitted") + t("colon") + count(row.submitted),
        t("automatic") +
          t("colon") +
          OUTCOMES.map(function (key) {
            return t(key) + " " + count(row[key]);
          }).join(" · ")
      ];
    };
    panel("applications", error, !anyPositive(datasets), config);
  }

  function renderQueue(data, error) {
    var figures = $("#queue-figures");
    figures.textContent = "";
    if (data && !error) {
      var ages = data.age_seconds || {};
      [
        ["waiting", count(data.waiting)],
        ["oldest", instant(data.oldest_submitted_at)],
        ["p50", duration(ages.p50)],
        ["p90", duration(ages.p90)],
        ["max", duration(ages.max)]
      ].forEach(function (pair) {
        var item = document.createElement("div");
        var term = document.createElement("dt");
        var value = document.createElement("dd");
        term.textContent = t(pair[0]);
        value.textContent = pair[1];
        value.setAttribute("data-figure", pair[0]);
        item.appendChild(term);
        item.appendChild(value);
        figures.appendChild(item);
      });
    }
    var rows = ((data && data.by_measure) || []).filter(function (row) {
      return Number(row.waiting || 0) > 0;
    });
    var labels = rows.map(function (row) {
      return measureLabel(row.measure);
    });
    // the age axis in days, hours or minutes, whichever suits the oldest application
    var oldest = rows.reduce(function (most, row) {
      return Math.max(most, Number(row.oldest_age_seconds || 0));
    }, 0);
    var unit = oldest >= 2 * 86400 ? "days" : oldest >= 2 * 3600 ? "hours" : "minutes";
    var divisor = { days: 86400, hours: 3600, minutes: 60 }[unit];
    var ageLabel = t("oldestAge", { unit: t("ageUnits." + unit) });
    var datasets = [
      dataset(
        "waiting",
        rows.map(function (row) {
          return Number(row.waiting || 0);
        }),
        { yAxisID: "y" }
      ),
      {
        label: ageLabel,
        data: rows.map(function (row) {
          return Math.round((Number(row.oldest_age_seconds || 0) / divisor) * 100) / 100;
        }),
        yAxisID: "age",
        backgroundColor: COLOURS.age,
        borderColor: COLOURS.age
      }
    ];
    var config = barConfig(labels, datasets, {
      countTooltip: true,
      scales: {
        y: { beginAtZero: true, ticks: { precision: 0 }, title: { display: true, text: t("waiting") } },
        age: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false }, title: { display: true, text: ageLabel } }
      }
    });
    panel("queue", error, !anyPositive(datasets), config);
  }

  function renderTop(data, error) {
    var section = $("#top-enterprises");
    if (!data || error) {
      section.hidden = true;
      return;
    }
    var body = $("tbody", section);
    body.textContent = "";
    (data.enterprises || []).forEach(function (row) {
      var tr = document.createElement("tr");
      [row.credit_code, money(row.issued_fen), money(row.redeemed_fen), money(row.granted_fen)].forEach(function (text, index) {
        var td = document.createElement("td");
        td.textContent = text;
        if (index > 0) td.className = "money";
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    section.hidden = false;
  }

  function render() {
    renderTexts();
    if (!state.data) return;
    var d = state.data;
    var e = state.errors;
    renderAsOf(d.summary);
    renderKpis(d.summary, d.budget);
    renderMonthly(d.monthly, e.monthly);
    renderMeasures(d.summary, e.summary);
    renderBudget(d.budget, e.budget);
    renderHeadroom(d.headroom, e.headroom);
    renderVendors(d.vendors, e.vendors);
    renderApplications(d.applications, e.applications);
    renderQueue(d.queue, e.queue);
    renderTop(d.top, e.top);
    var failed = Object.keys(e);
    if (failed.length) {
      showStatus(function () {
        return (
          t("partial") +
          failed
            .map(function (name) {
              return t("section." + name) + t("colon") + describe(e[name]);
            })
            .join("\n")
        );
      }, true);
    } else {
      showStatus(null);
    }
  }

  // --- loading -----------------------------------------------------------------------------------

  function load(quiet) {
    if (!state.token) {
      showLogin(null);
      return Promise.resolve();
    }
    if (tokenExpired()) {
      forgetToken();
      showLogin(function () {
        return t("err401");
      });
      return Promise.resolve();
    }
    var sequence = (state.sequence += 1);
    $("#login").hidden = true;
    $("#forget").hidden = false;
    if (!quiet) {
      setState("loading");
      showStatus(null);
    }
    var year = state.year;
    var requests = {
      summary: api("summary", { year: year }),
      monthly: api("monthly", { year: year }),
      budget: api("budget", { year: year }),
      headroom: api("ceiling-headroom", { year: year }),
      vendors: api("vendors", { year: year, limit: 10 }),
      applications: api("applications", { year: year }),
      queue: api("review-queue", {})
    };
    var mine = scopes();
    if (
      DETAIL_SCOPES.some(function (scope) {
        return mine.indexOf(scope) >= 0;
      })
    ) {
      requests.top = api("top-enterprises", { year: year, limit: 10 });
    }
    var names = Object.keys(requests);
    return Promise.allSettled(
      names.map(function (name) {
        return requests[name];
      })
    ).then(function (outcomes) {
      if (sequence !== state.sequence) return; // a newer load (another year) has started
      var data = {};
      var errors = {};
      outcomes.forEach(function (outcome, index) {
        if (outcome.status === "fulfilled") data[names[index]] = outcome.value;
        else
          errors[names[index]] =
            outcome.reason instanceof ApiError ? outcome.reason : new ApiError(0, "error", String(outcome.reason));
      });
      var unauthorised = names
        .map(function (name) {
          return errors[name];
        })
        .filter(function (error) {
          return error && error.status === 401;
        })[0];
      if (unauthorised) {
        forgetToken();
        showLogin(function () {
          return describe(unauthorised);
        });
        return;
      }
      if (Object.keys(data).length === 0) {
        // nothing answered: say why plainly (the first error), show no figures
        $("#content").hidden = true;
        showStatus(function () {
          return describe(errors[names[0]]);
        });
        setState("error");
        return;
      }
      state.data = data;
      state.errors = errors;
      $("#content").hidden = false;
      render();
      setState("ready");
    });
  }

  // --- wiring ------------------------------------------------------------------------------------

  function start() {
    var storedLang = recall("local", LANG_KEY);
    state.lang = storedLang === "en" ? "en" : "zh";
    takeTokenFromFragment();
    if (!state.token) state.token = recall("session", TOKEN_KEY);
    if (window.Chart) {
      window.Chart.defaults.font.family = getComputedStyle(document.documentElement).fontFamily;
      window.Chart.defaults.color = "#3e4c59";
    }
    fillYears();
    renderTexts();

    $("#lang").addEventListener("click", function () {
      state.lang = state.lang === "zh" ? "en" : "zh";
      remember("local", LANG_KEY, state.lang);
      render();
    });
    $("#year").addEventListener("change", function (event) {
      state.year = Number(event.target.value);
      remember("session", YEAR_KEY, state.year);
      load(false);
    });
    $("#refresh").addEventListener("click", function () {
      load(false);
    });
    $("#forget").addEventListener("click", function () {
      forgetToken();
      showLogin(null);
    });
    $("#token-form").addEventListener("submit", function (event) {
      event.preventDefault();
      var value = $("#token-input").value.trim();
      if (!value) return;
      state.token = value.replace(/^Bearer\s+/i, "");
      remember("session", TOKEN_KEY, state.token);
      $("#token-input").value = "";
      renderTexts();
      load(false);
    });
    window.addEventListener("hashchange", function () {
      var before = state.token;
      takeTokenFromFragment();
      if (state.token !== before) load(false);
    });
    window.setInterval(function () {
      if (state.token && document.visibilityState === "visible" && document.body.getAttribute("data-state") === "ready") {
        load(true);
      }
    }, REFRESH_MS);

    if (!window.Chart) {
      showStatus(function () {
        return "Chart.js did not load (dashboard/assets/chart.umd.min.js).";
      });
      setState("error");
      return;
    }
    load(false);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
