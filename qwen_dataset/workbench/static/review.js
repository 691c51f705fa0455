// Reviewer page: draw a spot-check sample and send single-annotated items back.
"use strict";

function cell(text) {
  const td = document.createElement("td");
  td.textContent = text;
  return td;
}

async function drawSample(form) {
  const params = new URLSearchParams();
  if (form.batch.value) params.set("batch", form.batch.value);
  params.set("limit", form.limit.value || "20");
  const rows = await api("GET", "/api/review/sample?" + params);
  const body = document.querySelector("#sample tbody");
  body.replaceChildren();
  for (const row of rows) {
    const tr = document.createElement("tr");
    tr.append(cell(row.batch), cell(row.frame_id), cell(row.task), cell(row.author));
    const td = document.createElement("td");
    const link = document.createElement("a");
    link.href = "/review/items/" + encodeURIComponent(row.item_id);
    link.textContent = "Inspect";
    td.append(link);
    tr.append(td);
    body.append(tr);
  }
  if (!rows.length) flash("No final single-annotated items to sample.", false);
}

document.addEventListener("DOMContentLoaded", () => {
  const form = document.getElementById("sample-form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    drawSample(form).catch((failure) => flash(failure.message, true));
  });
});
