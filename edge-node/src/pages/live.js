// daihuo's low-latency playback settings for hls.js, used by the room page and by the browser
// tests and the glass benchmark, so they measure what viewers get.
//
// hls.js speeds playback up to reach its target latency only while more than 1 s is buffered
// ahead (latency-controller.ts, `forwardBufferLength > 1`). A 1 s part hold-back never leaves
// that much, so hls.js stays wherever it started: about 0.3 s behind its target, for good, and
// after a stall wherever the stall left it. This catches up instead, at up to 1.5x, while at
// least half a second is buffered ahead, and hls.js's own rate control is off.
window.daihuoLive = {
  // Blocking playlist reloads, parts, preload hints; the target latency stays the part
  // hold-back after a stall (hls.js would raise it by a second at each).
  config: { lowLatencyMode: true, maxLiveSyncPlaybackRate: 1, liveSyncOnStallIncrease: 0 },
  catchUp(hls, video) {
    let catching = false;
    video.addEventListener("timeupdate", () => {
      const target = hls.targetLatency;
      if (!target || !hls.latency || video.paused) return;
      const over = hls.latency - target;
      const buffered = video.buffered;
      const ahead = buffered.length ? buffered.end(buffered.length - 1) - video.currentTime : 0;
      // Start 150 ms over the target, stop 50 ms over it: no flapping around the target.
      catching = ahead > 0.5 && over > (catching ? 0.05 : 0.15);
      const rate = catching ? Math.min(1.5, Math.round((1 + over / 2) * 20) / 20) : 1;
      if (video.playbackRate !== rate) video.playbackRate = rate;
    });
  },
};
