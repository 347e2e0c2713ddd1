"use strict";
// Shared by index.html and realtime.html: fetch the server's JSON, draw its plotly figures.

const PLOT_CONFIG = { displayModeBar: false, responsive: true };
const RETRY_SECONDS = 10;
const integer = new Intl.NumberFormat("en-US");
const compact = new Intl.NumberFormat("en-US", { notation: "compact", maximumFractionDigits: 2 });

async function fetchJSON(url) {
  const response = await fetch(url);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function showError(error) {
  const banner = document.getElementById("error");
  banner.textContent = `Could not load the data: ${error.message}`;
  banner.hidden = false;
}

async function drawAll(charts) {
  document.getElementById("error").hidden = true;
  await Promise.all(
    Object.entries(charts).map(([id, figure]) =>
      Plotly.react(id, figure.data, figure.layout, PLOT_CONFIG)
    )
  );
}

function fillTiles(totals) {
  const share = totals.visits ? totals.visits_with_purchase / totals.visits : 0;
  const revenue = Object.entries(totals.revenue)
    .map(([currency, amount]) => `${currency} ${compact.format(amount)}`)
    .join(" · ");
  const values = {
    visits: integer.format(totals.visits),
    page_views: integer.format(totals.page_views),
    visits_with_purchase: `${integer.format(totals.visits_with_purchase)} (${(share * 100).toFixed(1)}%)`,
    units_sold: integer.format(totals.units_sold),
    revenue: revenue || "0",
  };
  for (const [name, value] of Object.entries(values)) {
    document.getElementById(`tile-${name}`).textContent = value;
  }
}

// The dashboard: draw once; body[data-rendered] tells how many charts were drawn.
async function loadDashboard() {
  const body = await fetchJSON("/api/charts");
  document.getElementById("source").textContent = body.source;
  fillTiles(body.totals);
  await drawAll(body.charts);
  document.body.dataset.rendered = Object.keys(body.charts).length;
}

// The realtime page's incidents: body[data-open-incidents] says how many are open.
async function showIncidents() {
  const body = await fetchJSON("/api/incidents");
  const list = document.getElementById("incident-list");
  list.replaceChildren(
    ...body.incidents.map((incident) => {
      const item = document.createElement("li");
      item.className = `incident ${incident.state}`;
      const when = incident.closed_at ? `${incident.opened_at} to ${incident.closed_at}` : `since ${incident.opened_at}`;
      item.textContent = `${incident.state.toUpperCase()} ${when}: ${incident.summary}`;
      return item;
    })
  );
  document.getElementById("incidents").hidden = body.incidents.length === 0;
  document.body.dataset.openIncidents = body.open;
}

// The realtime page: redraw every refresh_seconds; body[data-updates] counts the redraws.
// The incidents are shown even when the charts' data cannot be read.
async function refreshRealtime() {
  let wait = RETRY_SECONDS;
  const incidents = showIncidents().catch(showError);
  try {
    const minutes = new URLSearchParams(location.search).get("minutes");
    const body = await fetchJSON("/api/realtime" + (minutes ? `?minutes=${encodeURIComponent(minutes)}` : ""));
    wait = body.refresh_seconds;
    document.getElementById("source").textContent = body.source;
    const end = body.window_end.slice(0, 16).replace("T", " ");
    const anchor = body.clock === "latest" ? "the latest minute in the data" : "now";
    document.getElementById("window").textContent =
      `Last ${body.minutes} minutes, up to ${end} UTC (${anchor}): ` +
      `${integer.format(body.page_views)} page views. ` +
      `Updated ${new Date().toLocaleTimeString()}, every ${wait} s.`;
    await Promise.all([drawAll(body.charts), incidents]);
    document.body.dataset.updates = Number(document.body.dataset.updates || 0) + 1;
  } catch (error) {
    showError(error);
  }
  setTimeout(refreshRealtime, wait * 1000);
}
