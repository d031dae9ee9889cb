// The player: HTTP-FLV of any stream at any online node, fetched through
// the controller's API relay (the token in the Authorization header) and
// played with mpegts.js (vendor/mpegts.js, loaded when first needed).

import {allNodes, get, relayPath, authHeaders} from "./api.js";
import {h, replace} from "./dom.js";

let loading = null;
function loadMpegts() {
  if (window.mpegts) return Promise.resolve(window.mpegts);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = "vendor/mpegts.js";
      el.addEventListener("load", () => resolve(window.mpegts));
      el.addEventListener("error", () => { loading = null; reject(new Error("vendor/mpegts.js did not load")); });
      document.head.appendChild(el);
    });
  }
  return loading;
}

// flvPath is the node-local HTTP-FLV path of stream |path| (app/name).
function flvPath(path) {
  return "/flv/" + path.split("/").map(encodeURIComponent).join("/") + ".flv";
}

export async function render(main, parts, params) {
  const nodeSel = h("select", {id: "play-node"});
  const pathIn = h("input", {id: "play-path", type: "text", list: "play-paths", placeholder: "live/cam1",
                             value: params.get("path") || ""});
  const paths = h("datalist", {id: "play-paths"});
  const start = h("button", {type: "submit", id: "play-start"}, "Play");
  const stopBtn = h("button", {type: "button", id: "play-stop"}, "Stop");
  const video = h("video", {id: "play-video", muted: true, autoplay: true, playsinline: true,
                            controls: true});
  video.muted = true;
  const stats = h("p", {id: "play-stats", class: "muted"});
  const error = h("p", {id: "play-error", class: "error", role: "alert"});
  const url = h("p", {class: "muted"});
  const f = h("form", {id: "play-form", class: "toolbar"},
    h("label", {for: "play-node"}, "Node"), nodeSel,
    h("label", {for: "play-path"}, "Stream"), pathIn, paths, start, stopBtn);
  replace(main, h("h1", {}, "Player"), f, url, video, stats, error);

  let player = null, timer = null;
  function stop() {
    clearInterval(timer);
    timer = null;
    if (player) {
      try { player.pause(); player.unload(); player.detachMediaElement(); player.destroy(); } catch (e) { /* gone */ }
      player = null;
    }
  }

  async function fillNodes() {
    const want = params.get("node");
    let nodes;
    try {
      nodes = await allNodes();
    } catch (e) {
      error.textContent = e.message;
      return;
    }
    replace(nodeSel, nodes.map((n) => h("option", {value: n.id, selected: String(n.id) === want},
      n.name + (n.online ? "" : " (offline)"))));
    try {
      const st = (await get("/api/cascade/streams")).data;
      replace(paths, st.map((x) => h("option", {value: x.path})));
    } catch (e) { /* the list is a convenience */ }
  }

  async function play(ev) {
    if (ev) ev.preventDefault();
    stop();
    error.textContent = "";
    const id = nodeSel.value, path = pathIn.value.trim();
    if (!id || !path) {
      error.textContent = "Choose a node and a stream path.";
      return;
    }
    let mpegts;
    try {
      mpegts = await loadMpegts();
    } catch (e) {
      error.textContent = "Playback is unavailable: " + e.message;
      return;
    }
    if (!mpegts.isSupported()) {
      error.textContent = "This browser cannot play HTTP-FLV (no Media Source Extensions).";
      return;
    }
    const src = relayPath(id, flvPath(path));
    url.textContent = "Playing " + path + " from node #" + id + " through the API relay (" + src + ")";
    player = mpegts.createPlayer({type: "flv", isLive: true, url: src},
      {headers: authHeaders(), enableWorker: false, liveBufferLatencyChasing: true,
       lazyLoad: false});
    player.on(mpegts.Events.ERROR, (type, detail, info) => {
      error.textContent = "Player: " + type + " " + detail + (info && info.msg ? ": " + info.msg : "") +
        (info && info.code ? " (" + info.code + ")" : "");
    });
    player.attachMediaElement(video);
    player.load();
    video.play().catch(() => { /* autoplay refused: the controls start it */ });
    timer = setInterval(() => {
      const q = video.getVideoPlaybackQuality ? video.getVideoPlaybackQuality() : null;
      stats.textContent = "time " + video.currentTime.toFixed(1) + " s" +
        (q ? ", frames decoded " + q.totalVideoFrames + ", dropped " + q.droppedVideoFrames : "") +
        (video.videoWidth ? ", " + video.videoWidth + "×" + video.videoHeight : "");
    }, 500);
  }

  f.addEventListener("submit", play);
  stopBtn.addEventListener("click", () => { stop(); stats.textContent = "stopped"; });
  await fillNodes();
  if (params.get("node") && params.get("path")) play();
  return {stop, refresh: () => {}};
}
