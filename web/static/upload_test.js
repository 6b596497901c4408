// The upload test page: read an album with the user's token, upload photos straight to
// Cloudinary (or the emulator) with the album's signed form, call upload_done, and show the
// album filling in. Plain DOM, no framework, no build step; CSP forbids inline script and eval.
"use strict";

(() => {
  const UPLOADS_AT_ONCE = 3; // a few parallel uploads: faster than one, gentle on the browser
  const POLL_MS = 1000;
  const PAGE_SIZE = 200; // the images endpoint's maximum
  const ARRIVAL_PATIENCE_MS = 120000; // how long to wait for webhooks of photos we uploaded
  const FORM_MARGIN_S = 60; // refresh a signed form this close to its expiry

  const $ = (id) => document.getElementById(id);
  const el = {
    access: $("access"), album: $("album"), token: $("token"), error: $("error"),
    albumId: $("album-id"), count: $("images-count"), status: $("album-status"),
    drop: $("drop"), files: $("files"), uploadNote: $("upload-note"),
    batch: $("batch-progress"), batchText: $("batch-text"), uploads: $("uploads"),
    pollState: $("poll-state"), images: $("images"),
    cardTemplate: $("card-template"), uploadTemplate: $("upload-template"),
  };

  const state = {
    albumId: "",
    token: "",
    form: null, // the signed upload form; null when the token has no image_upload right
    busy: false, // a batch is uploading
    cards: new Map(), // public_id -> card element
    fileNames: new Map(), // public_id -> original file name, for photos uploaded from this page
    awaited: new Set(), // public_ids uploaded but not yet listed by the API
    awaitingSince: 0,
    pollTimer: 0,
    pollFailed: false, // the last look at the album failed (its error is on the page)
  };

  // ---- errors said in words -------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 401) return `The token was refused (401): it is missing, malformed, badly signed or expired. Paste a fresh token. Server said: ${err.message}`;
      if (err.status === 403) return `This token has no right for that (403). Server said: ${err.message}`;
      if (err.status === 404) return `No such album (404). Check the album id.`;
      return `The server answered ${err.status}: ${err.message}`;
    }
    if (err instanceof TypeError) return "Network failure: the server could not be reached. Check your connection and try again.";
    return String(err && err.message ? err.message : err);
  }

  function showError(message) {
    el.error.textContent = message;
    el.error.hidden = !message;
  }

  // ---- the API ----------------------------------------------------------------------------

  async function api(path, method = "GET") {
    const url = `/api/v1/albums/${encodeURIComponent(state.albumId)}${path}`;
    const response = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${state.token}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit", // the API authenticates by token only
    });
    // Every authenticated answer re-issues the session: adopt it so a long session stays valid.
    const fresh = response.headers.get("X-token");
    if (fresh) state.token = fresh;
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: said below */ }
    if (!response.ok) {
      const e = (body && body.error) || {};
      throw new ApiError(response.status, e.code || "http_error", e.message || response.statusText);
    }
    return body;
  }

  async function allImages() {
    const images = [];
    let cursor = null;
    do {
      const query = `?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
      const page = await api(`/images${query}`);
      images.push(...page.images);
      cursor = page.next_cursor;
    } while (cursor);
    return images;
  }

  function adoptForm(album) {
    state.form = album.upload_form || null;
    const canUpload = Boolean(state.form);
    el.files.disabled = !canUpload;
    el.drop.dataset.disabled = String(!canUpload);
    el.uploadNote.textContent = canUpload
      ? `Photos go straight to ${new URL(state.form.url).host}; ${UPLOADS_AT_ONCE} at a time.`
      : "This token can read the album but has no image_upload right: uploads are off.";
  }

  async function openAlbum() {
    showError("");
    stopPolling();
    state.cards.clear();
    el.images.replaceChildren();
    el.albumId.textContent = state.albumId;
    try {
      const album = await api("");
      el.count.textContent = String(album.images_count);
      adoptForm(album);
    } catch (err) {
      state.form = null;
      el.files.disabled = true;
      el.drop.dataset.disabled = "true";
      showError(describe(err));
      return;
    }
    startPolling(); // the album may still be processing an earlier batch
  }

  // ---- uploads ------------------------------------------------------------------------------

  function uploadOne(file, row) {
    // XHR rather than fetch: only XHR reports upload progress.
    return new Promise((resolve, reject) => {
      const data = new FormData();
      for (const [name, value] of Object.entries(state.form.params)) data.append(name, String(value));
      data.append("file", file);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", state.form.url);
      xhr.responseType = "json";
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) row.progress(event.loaded / event.total);
      };
      xhr.onload = () => {
        const body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300 && body.public_id) resolve(body);
        else reject(new Error((body.error && body.error.message) || `upload failed (HTTP ${xhr.status})`));
      };
      xhr.onerror = () => reject(new Error("network failure: the upload server could not be reached"));
      xhr.ontimeout = () => reject(new Error("the upload timed out"));
      xhr.send(data);
    });
  }

  function uploadRow(file) {
    const node = el.uploadTemplate.content.firstElementChild.cloneNode(true);
    const bar = node.querySelector("progress");
    const label = node.querySelector(".upload-state");
    node.querySelector(".file-name").textContent = file.name;
    label.textContent = "waiting";
    el.uploads.append(node);
    return {
      done: 0,
      progress(fraction) { this.done = fraction; bar.value = fraction; label.textContent = `${Math.round(fraction * 100)}%`; },
      finish(ok, text) { node.dataset.state = ok ? "done" : "failed"; label.textContent = text; },
    };
  }

  async function ensureFreshForm() {
    if (state.form && state.form.expires_at - Date.now() / 1000 > FORM_MARGIN_S) return;
    adoptForm(await api(""));
    if (!state.form) throw new ApiError(403, "forbidden", "no upload form for this token");
  }

  async function uploadBatch(files) {
    files = files.filter((f) => f.type.startsWith("image/") || f.type === "");
    if (!files.length || state.busy) return;
    showError("");
    try {
      await ensureFreshForm();
    } catch (err) {
      showError(describe(err));
      return;
    }
    state.busy = true;
    el.files.disabled = true;
    const rows = files.map(uploadRow);
    const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
    const showBatch = () => {
      const sent = files.reduce((sum, f, i) => sum + f.size * rows[i].done, 0);
      el.batch.value = sent / total;
      el.batchText.textContent = `${finished} of ${files.length} sent${failed ? `, ${failed} failed` : ""}`;
    };
    let next = 0, finished = 0, failed = 0;
    const timer = setInterval(showBatch, 200);

    async function worker() {
      while (next < files.length) {
        const i = next++;
        try {
          const result = await uploadOne(files[i], rows[i]);
          rows[i].progress(1);
          rows[i].finish(true, "uploaded");
          state.fileNames.set(result.public_id, files[i].name);
          state.awaited.add(result.public_id);
        } catch (err) {
          failed++;
          rows[i].finish(false, `failed: ${err.message}`);
        }
        finished++;
        showBatch();
      }
    }
    await Promise.all(Array.from({ length: Math.min(UPLOADS_AT_ONCE, files.length) }, worker));
    clearInterval(timer);
    showBatch();
    state.busy = false;
    el.files.disabled = !state.form;
    el.files.value = "";

    // Tell the API the batch is over: it recounts, reconciles, and hands out a fresh form.
    try {
      adoptForm(await api("/upload_done", "POST"));
    } catch (err) {
      showError(`upload_done failed: ${describe(err)}`);
    }
    state.awaitingSince = Date.now();
    startPolling();
  }

  // ---- the album, live ------------------------------------------------------------------------

  function startPolling() {
    stopPolling();
    const tick = async () => {
      let settled = false;
      try {
        settled = await refresh();
        if (state.pollFailed) showError("");
        state.pollFailed = false;
      } catch (err) {
        state.pollFailed = true;
        showError(describe(err));
        // A refused token will not get better by retrying; a network blip may.
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) settled = true;
      }
      if (settled) {
        el.pollState.textContent = "Up to date.";
        state.pollTimer = 0;
      } else {
        state.pollTimer = setTimeout(tick, POLL_MS);
      }
    };
    el.pollState.textContent = "Watching the workers…";
    state.pollTimer = setTimeout(tick, 0);
  }

  function stopPolling() {
    clearTimeout(state.pollTimer);
    state.pollTimer = 0;
  }

  // One look at the album; true when nothing is left to wait for.
  async function refresh() {
    const [status, images, dups] = await Promise.all([api("/status"), allImages(), api("/duplicates")]);
    el.count.textContent = String(status.images_count);
    const c = status.counts;
    el.status.textContent = `${c.ready} ready, ${c.processing} processing, ${c.received} received, ${c.failed} failed`;

    const groupOf = new Map();
    dups.groups.forEach((group, i) => group.forEach((member) => groupOf.set(member.public_id, i + 1)));
    for (const image of images) {
      state.awaited.delete(image.public_id);
      renderCard(image, groupOf.get(image.public_id));
    }
    const listed = new Set(images.map((image) => image.public_id));
    for (const [publicId, card] of state.cards) {
      if (!listed.has(publicId)) { card.remove(); state.cards.delete(publicId); }
    }

    const waitingForWebhooks = state.awaited.size > 0 && Date.now() - state.awaitingSince < ARRIVAL_PATIENCE_MS;
    if (state.awaited.size && !waitingForWebhooks) {
      showError(`${state.awaited.size} uploaded photo(s) have not reached the album yet; reconciliation may still bring them. Reopen the album to check again.`);
      state.awaited.clear();
    }
    const working = c.received + c.processing > 0;
    // images_count is recounted by a debounced task: wait until it agrees with the list.
    const counted = status.images_count === images.length;
    return !working && !waitingForWebhooks && counted;
  }

  // ---- rendering ----------------------------------------------------------------------------

  const HEX = /^#[0-9a-f]{3,8}$/i;

  function renderCard(image, dupGroup) {
    let card = state.cards.get(image.public_id);
    if (!card) {
      card = el.cardTemplate.content.firstElementChild.cloneNode(true);
      card.dataset.publicId = image.public_id;
      state.cards.set(image.public_id, card);
      el.images.append(card);
    }
    const name = state.fileNames.get(image.public_id);
    if (name) card.dataset.fileName = name;
    card.dataset.status = image.status;
    card.querySelector(".name").textContent = name || image.public_id;
    card.querySelector(".facts").textContent = [
      image.width && image.height ? `${image.width}×${image.height}` : "",
      image.format || "",
      image.bytes ? `${Math.round(image.bytes / 1024)} KB` : "",
    ].filter(Boolean).join(" · ");
    card.querySelector(".status-badge").textContent = image.status;

    setSrc(card.querySelector("img.thumb"), image.thumbnail_url);
    renderPhoto(card.querySelector(".photo"), image);
    renderDuplicate(card.querySelector(".badges"), dupGroup);
    renderSwatches(card.querySelector(".swatches"), image.colors || []);
    renderExif(card.querySelector(".exif"), image.image_metadata || {});

    const error = card.querySelector(".card-error");
    error.textContent = image.error ? `Failed: ${image.error}` : "";
    error.hidden = !image.error;
  }

  function setSrc(img, url) {
    if (!url) { img.hidden = true; return; }
    if (img.getAttribute("src") !== url) {
      img.referrerPolicy = "no-referrer";
      img.src = url;
    }
    img.hidden = false;
  }

  // Faces are [x, y, w, h] in original pixels. The preview keeps the original aspect ratio
  // (c_limit), so percentages of the original width/height place the boxes at any displayed size.
  // (The square face-cropped thumbnail would not fit them.)
  function renderPhoto(photo, image) {
    const preview = photo.querySelector("img.preview");
    setSrc(preview, image.preview_url);
    photo.hidden = !image.preview_url;
    if (image.width && image.height) photo.style.aspectRatio = `${image.width} / ${image.height}`;
    const faces = image.width && image.height ? image.faces || [] : [];
    const key = JSON.stringify(faces);
    if (photo.dataset.faces === key) return;
    photo.dataset.faces = key;
    photo.querySelectorAll(".face-box").forEach((box) => box.remove());
    for (const [x, y, w, h] of faces) {
      const box = document.createElement("div");
      box.className = "face-box";
      box.title = `face at ${x},${y} (${w}×${h})`;
      // Setting style properties from script is allowed under style-src 'self'.
      box.style.left = `${(100 * x) / image.width}%`;
      box.style.top = `${(100 * y) / image.height}%`;
      box.style.width = `${(100 * w) / image.width}%`;
      box.style.height = `${(100 * h) / image.height}%`;
      photo.append(box);
    }
  }

  function renderDuplicate(badges, group) {
    let badge = badges.querySelector(".dup-badge");
    if (!group) { if (badge) badge.remove(); return; }
    if (!badge) {
      badge = document.createElement("span");
      badge.className = "dup-badge";
      badges.append(badge);
    }
    badge.dataset.group = String(group);
    badge.textContent = `duplicate group ${group}`;
  }

  function renderSwatches(box, colors) {
    const key = JSON.stringify(colors.slice(0, 8));
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...colors.slice(0, 8).filter(([hex]) => HEX.test(hex)).map(([hex, percent]) => {
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.backgroundColor = hex;
      swatch.title = `${hex} ${percent}%`;
      return swatch;
    }));
  }

  function renderExif(dl, meta) {
    const fields = [
      ["Make", meta.Make],
      ["Model", meta.Model],
      ["Taken", meta.DateTimeOriginal || meta.DateTime],
    ].filter(([, value]) => value);
    const key = JSON.stringify(fields);
    if (dl.dataset.key === key) return;
    dl.dataset.key = key;
    dl.replaceChildren(...fields.flatMap(([label, value]) => {
      const dt = document.createElement("dt");
      const dd = document.createElement("dd");
      dt.textContent = label;
      dd.textContent = value;
      return [dt, dd];
    }));
  }

  // ---- wiring -------------------------------------------------------------------------------

  el.access.addEventListener("submit", (event) => {
    event.preventDefault(); // nothing is ever posted to the server (CSP: form-action 'none')
    if (state.busy) return; // a batch belongs to the album it started on
    state.albumId = el.album.value.trim();
    state.token = el.token.value.trim();
    if (state.albumId && state.token) openAlbum();
  });

  el.files.addEventListener("change", () => uploadBatch(Array.from(el.files.files)));

  el.drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    el.drop.classList.toggle("over", !el.files.disabled);
  });
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("over");
    if (!el.files.disabled) uploadBatch(Array.from(event.dataTransfer.files));
  });

  // ?album=...&token=... as `make run` prints it. Read once, then drop the token from the
  // address bar and history so it is not bookmarked, shared or sent on.
  const query = new URLSearchParams(location.search);
  el.album.value = query.get("album") || "";
  el.token.value = query.get("token") || "";
  if (query.has("token")) {
    query.delete("token");
    const rest = query.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  if (el.album.value && el.token.value) el.access.requestSubmit();
})();
