// The upload test page: read an album with the user's token, upload photos and videos straight
// to Cloudinary (or the emulator) with the album's signed form, call upload_done, and show the
// album filling in as each item becomes ready. Plain DOM, no framework, no build step; CSP
// forbids inline script and eval.
"use strict";

(() => {
  const UPLOADS_AT_ONCE = 3; // a few parallel uploads: faster than one, gentle on the browser
  const POLL_MS = 1000;
  const PAGE_SIZE = 200; // the largest page /images and /duplicates give
  const ARRIVAL_PATIENCE_MS = 120000; // how long to wait for webhooks of files we uploaded
  const FORM_MARGIN_S = 60; // refresh a signed form this close to its expiry
  const AUTO_RETRIES = 4; // network failures and 5xx: retried by themselves, with backoff
  const RETRY_BASE_MS = 1000; // 1, 2, 4, 8 s (with jitter) between automatic retries
  const SESSION_KEY = "upload_test.session"; // album and token, for this tab only (sessionStorage)

  const $ = (id) => document.getElementById(id);
  const el = {
    access: $("access"), album: $("album"), token: $("token"), error: $("error"),
    albumId: $("album-id"), count: $("images-count"), countNote: $("count-note"), status: $("album-status"),
    drop: $("drop"), files: $("files"), uploadNote: $("upload-note"),
    batch: $("batch-progress"), batchText: $("batch-text"), uploads: $("uploads"),
    pollState: $("poll-state"), images: $("images"),
    cardTemplate: $("card-template"), uploadTemplate: $("upload-template"),
  };

  const state = {
    albumId: "",
    token: "",
    form: null, // the signed upload form; null when the token has no image_upload right
    items: [], // every file chosen since the album was opened (see newItem)
    sending: 0, // uploads in flight
    sentSinceDone: 0, // files uploaded since the last upload_done
    batchHadVideo: false,
    cards: new Map(), // public_id -> card element
    fileNames: new Map(), // public_id -> the file's name, for files uploaded from this page
    awaited: new Map(), // etag (or public_id) of an uploaded file -> its item, until the API lists it
    awaitingSince: 0,
    changesCursor: null, // GET /changes cursor; null: not read yet
    changesMissing: false, // the server has no /changes endpoint (404): re-read /images instead
    status: null, // the last GET /status answer
    dupKey: "", // the phash-bearing images the duplicate groups were last read for
    pollTimer: 0,
    pollFailed: false, // the last look at the album failed (its error is on the page)
    generation: 0, // bumped when an album is (re)opened: late answers for the old one are dropped
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

  // ---- the session, kept for the tab ------------------------------------------------------

  function saveSession() {
    try {
      sessionStorage.setItem(SESSION_KEY, JSON.stringify({ album: state.albumId, token: state.token }));
    } catch (_) { /* storage off (private mode): a refresh then asks for the token again */ }
  }

  function loadSession() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      return saved && typeof saved.album === "string" && typeof saved.token === "string" ? saved : null;
    } catch (_) {
      return null;
    }
  }

  function forgetSession() {
    try { sessionStorage.removeItem(SESSION_KEY); } catch (_) { /* nothing kept */ }
  }

  // ---- the API ----------------------------------------------------------------------------

  async function api(path, method = "GET") {
    const url = `/api/v1/albums/${encodeURIComponent(state.albumId)}${path}`;
    const sent = state.token;
    const response = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${sent}`, Accept: "application/json" },
      cache: "no-store",
      credentials: "omit", // the API authenticates by token only
    });
    // Every authenticated answer re-issues the session: adopt it so a long session stays valid —
    // unless another token was given meanwhile: a late answer to a poll made with the previous
    // token must not bring that session back (and store it for the tab).
    const fresh = response.headers.get("X-token");
    if (fresh && sent === state.token && fresh !== sent) {
      state.token = fresh;
      saveSession();
    }
    let body = null;
    try { body = await response.json(); } catch (_) { /* not JSON: said below */ }
    if (!response.ok) {
      const e = (body && body.error) || {};
      throw new ApiError(response.status, e.code || "http_error", e.message || response.statusText);
    }
    return body;
  }

  // Every item of a paged listing (/images, /duplicates: `limit`, `cursor`, `next_cursor`).
  async function allPages(path, key) {
    const items = [];
    let cursor = null;
    do {
      const query = `?limit=${PAGE_SIZE}` + (cursor ? `&cursor=${encodeURIComponent(cursor)}` : "");
      const page = await api(`${path}${query}`);
      items.push(...page[key]);
      cursor = page.next_cursor;
    } while (cursor);
    return items;
  }

  const allImages = () => allPages("/images", "images");

  function adoptForm(album) {
    state.form = album.upload_form || null;
    const canUpload = Boolean(state.form);
    el.files.disabled = !canUpload;
    el.drop.dataset.disabled = String(!canUpload);
    el.uploadNote.textContent = canUpload
      ? `Photos and videos go straight to ${new URL(state.form.url).host}; ${UPLOADS_AT_ONCE} at a time.`
      : "This token can read the album but has no image_upload right: uploads are off.";
  }

  // Nothing of a previous album or token stays on screen: a refused token must not leave the
  // last album's figures and photos looking current.
  function clearAlbum() {
    stopPolling();
    state.generation++;
    state.cards.clear();
    state.awaited.clear();
    state.changesCursor = null;
    state.status = null;
    state.dupKey = "";
    el.images.replaceChildren();
    el.count.textContent = "–";
    el.countNote.textContent = "";
    el.status.textContent = "–";
    el.pollState.textContent = "";
  }

  function refuse(err) {
    state.form = null;
    el.files.disabled = true;
    el.drop.dataset.disabled = "true";
    clearAlbum();
    el.albumId.textContent = "–";
    if (err instanceof ApiError && (err.status === 401 || err.status === 403 || err.status === 404)) forgetSession();
    showError(describe(err));
  }

  async function openAlbum() {
    showError("");
    clearAlbum();
    el.albumId.textContent = state.albumId;
    try {
      const album = await api("");
      el.count.textContent = String(album.images_count);
      adoptForm(album);
      saveSession();
    } catch (err) {
      refuse(err);
      return;
    }
    startPolling(); // the album may still be processing an earlier batch
  }

  // ---- uploads ------------------------------------------------------------------------------

  // One chosen file: its row, its upload, its fate (waiting, sending, retrying, done,
  // duplicate, failed, cancelled).
  function newItem(file) {
    const node = el.uploadTemplate.content.firstElementChild.cloneNode(true);
    const item = {
      file, node, xhr: null, timer: 0, attempts: 0, fraction: 0, state: "waiting",
      bar: node.querySelector("progress"),
      label: node.querySelector(".upload-state"),
    };
    node.querySelector(".file-name").textContent = file.name;
    showLocalPreview(node.querySelector(".local-preview"), file);
    node.querySelector(".cancel").addEventListener("click", () => cancel(item));
    node.querySelector(".retry").addEventListener("click", () => retry(item));
    el.uploads.append(node);
    setItem(item, "waiting", "waiting");
    return item;
  }

  // A preview from the file itself, before anything is sent (blob: URLs, allowed by the CSP).
  // A format the browser cannot show (HEIC in most) keeps the placeholder.
  function showLocalPreview(box, file) {
    const url = URL.createObjectURL(file);
    let media;
    if (file.type.startsWith("video/")) {
      media = document.createElement("video");
      media.muted = true;
      media.preload = "metadata";
      media.addEventListener("loadeddata", () => URL.revokeObjectURL(url), { once: true });
    } else {
      media = document.createElement("img");
      media.alt = "";
      media.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    }
    media.addEventListener("error", () => { media.remove(); URL.revokeObjectURL(url); }, { once: true });
    media.src = url;
    box.append(media);
  }

  function setItem(item, itemState, text) {
    item.state = itemState;
    item.node.dataset.state = itemState;
    item.label.textContent = text;
    item.node.querySelector(".cancel").hidden = !["waiting", "sending", "retrying"].includes(itemState);
    item.node.querySelector(".retry").hidden = !["failed", "cancelled"].includes(itemState);
  }

  function progress(item, fraction) {
    item.fraction = fraction;
    item.bar.value = fraction;
    if (item.state === "sending") item.label.textContent = `${Math.round(fraction * 100)}%`;
  }

  class UploadError extends Error {
    constructor(message, transient) {
      super(message);
      this.transient = transient; // worth retrying by itself: the network, a 5xx, a rate limit
    }
  }

  function uploadOne(item) {
    // XHR rather than fetch: only XHR reports upload progress (and it can be aborted).
    return new Promise((resolve, reject) => {
      const data = new FormData();
      for (const [name, value] of Object.entries(state.form.params)) data.append(name, String(value));
      data.append("file", item.file);
      const xhr = new XMLHttpRequest();
      item.xhr = xhr;
      xhr.open("POST", state.form.url);
      xhr.responseType = "json";
      xhr.upload.onprogress = (event) => {
        if (event.lengthComputable) progress(item, event.loaded / event.total);
      };
      xhr.onload = () => {
        const body = xhr.response || {};
        if (xhr.status >= 200 && xhr.status < 300 && body.public_id) resolve(body);
        else reject(new UploadError((body.error && body.error.message) || `upload failed (HTTP ${xhr.status})`,
                                    xhr.status >= 500 || xhr.status === 420 || xhr.status === 429));
      };
      xhr.onerror = () => reject(new UploadError("network failure: the upload server could not be reached", true));
      xhr.ontimeout = () => reject(new UploadError("the upload timed out", true));
      xhr.onabort = () => reject(new UploadError("cancelled", false));
      xhr.send(data);
    });
  }

  async function ensureFreshForm() {
    if (state.form && state.form.expires_at - Date.now() / 1000 > FORM_MARGIN_S) return;
    adoptForm(await api(""));
    if (!state.form) throw new ApiError(403, "forbidden", "no upload form for this token");
  }

  function accepted(file) {
    return file.type.startsWith("image/") || file.type.startsWith("video/") || file.type === ""
      || /\.(heic|heif)$/i.test(file.name);
  }

  async function addFiles(files) {
    files = files.filter(accepted);
    if (!files.length) return;
    showError("");
    try {
      await ensureFreshForm();
    } catch (err) {
      showError(describe(err));
      return;
    }
    for (const file of files) state.items.push(newItem(file));
    el.files.value = "";
    pump();
  }

  // Start waiting uploads while fewer than UPLOADS_AT_ONCE are in flight; when none is left
  // to send, tell the API the batch is over.
  function pump() {
    while (state.sending < UPLOADS_AT_ONCE) {
      const item = state.items.find((i) => i.state === "waiting");
      if (!item) break;
      send(item);
    }
    showBatch();
    if (!busy() && state.sentSinceDone > 0) uploadDone();
  }

  function busy() {
    return state.items.some((i) => ["waiting", "sending", "retrying"].includes(i.state));
  }

  async function send(item) {
    state.sending++;
    item.attempts++;
    setItem(item, "sending", "0%");
    const generation = state.generation;
    try {
      const result = await uploadOne(item);
      if (generation !== state.generation) return;
      progress(item, 1);
      arrived(item, result);
    } catch (err) {
      if (item.state === "cancelled") return;
      if (err.transient && item.attempts <= AUTO_RETRIES) {
        // Exponential backoff with jitter, so a batch cut off by one outage does not come back as one burst.
        const delay = RETRY_BASE_MS * 2 ** (item.attempts - 1) * (0.75 + Math.random() / 4);
        setItem(item, "retrying", `${err.message}; retrying in ${Math.ceil(delay / 1000)} s`);
        item.timer = setTimeout(() => {
          item.timer = 0;
          if (item.state === "retrying") setItem(item, "waiting", "waiting");
          pump();
        }, delay);
      } else {
        setItem(item, "failed", `failed: ${err.message}`);
      }
    } finally {
      item.xhr = null;
      state.sending--;
      pump();
    }
  }

  // An upload Cloudinary took. Same bytes as an item already in the album (its etag) or
  // already sent in this batch: the album keeps one (the server drops the copy), and the row
  // says so; otherwise the page waits for the album to list it.
  function arrived(item, result) {
    state.sentSinceDone++;
    if (result.resource_type === "video") state.batchHadVideo = true;
    state.fileNames.set(result.public_id, item.file.name);
    const key = result.etag || result.public_id;
    const twin = result.etag ? [...state.cards.values()].find((card) => card.dataset.etag === result.etag) : null;
    if (twin && twin.dataset.publicId !== result.public_id) {
      setItem(item, "duplicate", `already in the album (as ${twin.dataset.fileName || twin.dataset.publicId})`);
    } else if (state.awaited.has(key) && state.awaited.get(key) !== item) {
      setItem(item, "duplicate", `already in the album (same file as ${state.awaited.get(key).file.name})`);
    } else {
      setItem(item, "done", "uploaded");
      state.awaited.set(key, item);
      if (!state.awaitingSince) state.awaitingSince = Date.now();
    }
    startPolling(); // show it as soon as it is ready, while the rest is still sending
  }

  function cancel(item) {
    if (item.xhr) item.xhr.abort();
    clearTimeout(item.timer);
    item.timer = 0;
    setItem(item, "cancelled", "cancelled");
    pump();
  }

  function retry(item) {
    item.attempts = 0;
    progress(item, 0);
    setItem(item, "waiting", "waiting");
    showError("");
    ensureFreshForm().then(pump, (err) => { showError(describe(err)); setItem(item, "failed", "failed: no upload form"); });
  }

  function showBatch() {
    const counted = state.items.filter((i) => i.state !== "cancelled");
    const total = counted.reduce((sum, i) => sum + i.file.size, 0) || 1;
    const sent = counted.reduce((sum, i) => sum + i.file.size * i.fraction, 0);
    const n = (s) => counted.filter((i) => i.state === s).length;
    const finished = n("done") + n("duplicate");
    el.batch.value = counted.length ? sent / total : 0;
    el.batchText.textContent = counted.length
      ? `${finished} of ${counted.length} sent` + (n("duplicate") ? `, ${n("duplicate")} already there` : "")
        + (n("failed") ? `, ${n("failed")} failed` : "") + (n("retrying") ? `, ${n("retrying")} retrying` : "")
      : "";
  }

  // Tell the API the batch is over: it recounts, reconciles, and hands out a fresh form.
  async function uploadDone() {
    const videos = state.batchHadVideo;
    state.sentSinceDone = 0;
    state.batchHadVideo = false;
    try {
      adoptForm(await api(videos ? "/upload_done?videos=1" : "/upload_done", "POST"));
    } catch (err) {
      showError(`upload_done failed: ${describe(err)}`);
    }
    state.awaitingSince = state.awaitingSince || Date.now();
    startPolling();
  }

  // ---- the album, live ------------------------------------------------------------------------

  function startPolling() {
    if (state.pollTimer) return; // already watching
    const generation = state.generation;
    const tick = async () => {
      let settled = false;
      try {
        settled = await refresh(generation);
        if (state.pollFailed) showError("");
        state.pollFailed = false;
      } catch (err) {
        if (generation !== state.generation) return;
        state.pollFailed = true;
        // A refused token will not get better by retrying; a network blip may.
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) {
          refuse(err);
          return;
        }
        showError(describe(err));
      }
      if (generation !== state.generation) return;
      if (settled) {
        el.pollState.textContent = "Up to date.";
        state.pollTimer = 0;
      } else {
        state.pollTimer = setTimeout(tick, POLL_MS);
      }
    };
    el.pollState.textContent = busy() ? "Sending; showing each item as it becomes ready…" : "Watching the workers…";
    state.pollTimer = setTimeout(tick, 0);
  }

  function stopPolling() {
    clearTimeout(state.pollTimer);
    state.pollTimer = 0;
  }

  // What changed in the album since the last look: GET /changes when the server has it (a
  // poll then costs what changed, not the album's size), else the whole list again.
  async function readChanges() {
    if (!state.changesMissing) {
      try {
        if (state.changesCursor === null) {
          // No cursor yet: take the current one first, then read everything once, so nothing
          // that changes in between is missed (it comes again with the next changes).
          const start = await api("/changes");
          state.changesCursor = start.cursor;
          return { images: await allImages(), deleted: [], complete: true };
        }
        const images = [], deleted = [];
        for (let more = true; more;) {
          const page = await api(`/changes?since=${encodeURIComponent(state.changesCursor)}`);
          images.push(...page.images);
          deleted.push(...page.deleted);
          state.changesCursor = page.cursor;
          more = page.more;
        }
        return { images, deleted, complete: false };
      } catch (err) {
        // 404 from a server without the endpoint (not "no such album", which is the album's own).
        if (!(err instanceof ApiError && err.status === 404 && err.code !== "album_not_found")) throw err;
        state.changesMissing = true;
      }
    }
    return { images: await allImages(), deleted: [], complete: true };
  }

  function liveCount(status) {
    const c = status.counts;
    return c.received + c.processing + c.ready + c.failed;
  }

  // One look at the album; true when nothing is left to wait for.
  async function refresh(generation) {
    const changes = await readChanges();
    if (generation !== state.generation) return true;
    // Stage counts move only when an image does, which /changes reports; the stored count moves
    // on its own only while a recount is pending. A poll with nothing new then costs one small
    // request, whatever the album's size (/status counts the whole album).
    const quiet = !changes.complete && changes.images.length === 0 && changes.deleted.length === 0;
    if (!state.status || !quiet || liveCount(state.status) !== state.status.images_count) {
      const fresh = await api("/status");
      if (generation !== state.generation) return true;
      state.status = fresh;
    }
    const status = state.status;
    const c = status.counts;
    // The count shown is the status's own live figure, so it never contradicts the statuses
    // beside it; while the album's stored count trails it, a recount is pending and said so.
    const live = liveCount(status);
    el.count.textContent = String(live);
    el.countNote.textContent = status.images_count === live ? "" : "(recount pending)";
    el.status.textContent = `${c.ready} ready, ${c.processing} processing, ${c.received} received, ${c.failed} failed`;

    for (const image of changes.images) {
      if (image.status === "deleted") removeCard(image.public_id);
      else renderCard(image);
    }
    const deleted = new Set(changes.deleted.map(String));
    if (changes.complete) {
      const listed = new Set(changes.images.map((image) => image.public_id));
      for (const publicId of state.cards.keys()) if (!listed.has(publicId)) removeCard(publicId);
    }
    for (const [publicId, card] of state.cards) if (deleted.has(card.dataset.id)) removeCard(publicId);
    await refreshDuplicates(generation);

    const waitingForWebhooks = state.awaited.size > 0 && Date.now() - state.awaitingSince < ARRIVAL_PATIENCE_MS;
    if (state.awaited.size && !waitingForWebhooks) {
      showError(`${state.awaited.size} uploaded file(s) have not reached the album yet; reconciliation may still bring them. Reopen the album to check again.`);
      state.awaited.clear();
    }
    if (!state.awaited.size) state.awaitingSince = 0;
    const working = c.received + c.processing > 0;
    // /status is read after /changes: a photo that became ready between the two reads is
    // counted ready there while its card still shows it processing. Stop only when the cards
    // agree, or that card would stay "processing" until the page is reloaded.
    const cardsWorking = [...state.cards.values()].some((card) => ["received", "processing"].includes(card.dataset.status));
    return !busy() && !working && !cardsWorking && !waitingForWebhooks && status.images_count === live;
  }

  // Near-duplicate groups change only when an image gains its pHash: read them only then.
  async function refreshDuplicates(generation) {
    const hashed = [...state.cards.values()].filter((card) => card.dataset.phash).map((card) => card.dataset.id);
    const key = hashed.sort().join(",");
    if (key === state.dupKey) return;
    const groups = await allPages("/duplicates", "groups"); // numbered in order below
    if (generation !== state.generation) return;
    state.dupKey = key;
    const groupOf = new Map();
    groups.forEach((group, i) => group.forEach((member) => groupOf.set(member.public_id, i + 1)));
    for (const [publicId, card] of state.cards) renderDuplicate(card.querySelector(".badges"), groupOf.get(publicId));
  }

  // ---- rendering ----------------------------------------------------------------------------

  const HEX = /^#[0-9a-f]{3,8}$/i;

  function displayName(image) {
    const local = state.fileNames.get(image.public_id);
    if (local) return local;
    if (image.original_filename) {
      const ext = image.format ? `.${image.format}` : "";
      return image.original_filename.endsWith(ext) ? image.original_filename : image.original_filename + ext;
    }
    return image.public_id;
  }

  function duration(seconds) {
    const s = Math.round(seconds);
    return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
  }

  function removeCard(publicId) {
    const card = state.cards.get(publicId);
    if (card) card.remove();
    state.cards.delete(publicId);
  }

  function renderCard(image) {
    let card = state.cards.get(image.public_id);
    if (!card) {
      card = el.cardTemplate.content.firstElementChild.cloneNode(true);
      card.dataset.publicId = image.public_id;
      card.dataset.id = String(image.id);
      state.cards.set(image.public_id, card);
      // In the album's order (by id), whatever order the items became ready in.
      const after = [...el.images.children].find((other) => Number(other.dataset.id) > image.id);
      el.images.insertBefore(card, after || null);
    }
    state.awaited.delete(image.public_id);
    if (image.etag) state.awaited.delete(image.etag);
    const name = displayName(image);
    card.dataset.id = String(image.id);
    card.dataset.fileName = name;
    card.dataset.status = image.status;
    card.dataset.resourceType = image.resource_type || "image";
    card.dataset.etag = image.etag || "";
    card.dataset.phash = image.phash || "";
    card.querySelector(".name").textContent = name;
    card.querySelector(".facts").textContent = [
      image.width && image.height ? `${image.width}×${image.height}` : "",
      image.format || "",
      image.bytes ? `${Math.round(image.bytes / 1024)} KB` : "",
    ].filter(Boolean).join(" · ");
    card.querySelector(".status-badge").textContent = image.status;
    const badge = card.querySelector(".duration");
    badge.hidden = image.duration == null;
    badge.textContent = image.duration == null ? "" : duration(image.duration);

    setSrc(card.querySelector("img.thumb"), image.thumbnail_url);
    if (image.resource_type === "video") renderVideo(card.querySelector(".photo"), image);
    else renderPhoto(card.querySelector(".photo"), image);
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

  // A video: its poster frame with a play button; the MP4 preview is fetched only when played,
  // so an album of videos costs its posters, not its videos.
  function renderVideo(photo, image) {
    const poster = photo.querySelector("img.preview");
    const player = photo.querySelector("video.player");
    const play = photo.querySelector("button.play");
    if (image.width && image.height) photo.style.aspectRatio = `${image.width} / ${image.height}`;
    if (player.getAttribute("src")) return; // playing (or played): leave it alone
    poster.classList.add("poster");
    setSrc(poster, image.thumbnail_url);
    photo.hidden = !image.thumbnail_url;
    play.hidden = !image.preview_url;
    play.onclick = () => {
      player.poster = image.thumbnail_url;
      player.src = image.preview_url;
      player.hidden = false;
      poster.hidden = true;
      play.hidden = true;
      player.play().catch(() => { /* autoplay refused: the controls are there */ });
    };
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
    if (busy()) return; // uploads under way belong to the album they started on
    state.albumId = el.album.value.trim();
    state.token = el.token.value.trim();
    if (state.albumId && state.token) openAlbum();
  });

  el.files.addEventListener("change", () => addFiles(Array.from(el.files.files)));

  el.drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    el.drop.classList.toggle("over", !el.files.disabled);
  });
  el.drop.addEventListener("dragleave", () => el.drop.classList.remove("over"));
  el.drop.addEventListener("drop", (event) => {
    event.preventDefault();
    el.drop.classList.remove("over");
    if (!el.files.disabled) addFiles(Array.from(event.dataTransfer.files));
  });

  // Leaving while files are still being sent loses them: ask first.
  window.addEventListener("beforeunload", (event) => {
    if (busy()) event.preventDefault();
  });

  // ?album=...&token=... as `make run` prints it. Read once, then drop the token from the
  // address bar and history so it is not bookmarked, shared or sent on. The tab keeps it in
  // sessionStorage (gone with the tab), so a refresh reopens the album.
  const query = new URLSearchParams(location.search);
  const saved = loadSession();
  el.album.value = query.get("album") || (saved ? saved.album : "");
  el.token.value = query.get("token")
    || (saved && saved.album === el.album.value ? saved.token : "");
  if (query.has("token")) {
    query.delete("token");
    const rest = query.toString();
    history.replaceState(null, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
  }
  if (el.album.value && el.token.value) el.access.requestSubmit();
})();
