// pixel_server browser tracker: page views, UTM values, clicks and custom events, batched
// to POST /e (docs/events.md). What it sends, stores and when: docs/tracker.md.
//
// Hand-written ES2017 without dependencies or a build step. The server drops whole-line
// comments, indentation and blank lines when it serves this file (pixel_server/tracker.py),
// and nothing else; so no template literals here, and no comment after code on a line.
try {
  (() => {
    'use strict';
    const w = window, d = document, nav = navigator;
    // Loaded twice (t.js and t.<hash>.js, or a snippet pasted twice): the first one runs.
    if (w.pixel && w.pixel.loaded) return;

    const FLUSH_MS = 1000;
    const BATCH = 20;
    const MAX_QUEUE = 100;
    const MAX_TRIES = 10;
    const MAX_PARAMS = 50;
    const MAX_CHARS = 2048;
    const KEY = 'pixel';
    const UTM = ['utm_source', 'utm_medium', 'utm_campaign', 'utm_term', 'utm_content', 'utm_id'];

    // Every entry point goes through safe(): the tracker must never throw into the page.
    const safe = (f) => function () {
      try {
        return f.apply(this, arguments);
      } catch (e) {
        return undefined;
      }
    };

    // 1. Configuration: the attributes of this script tag (docs/tracker.md).
    const tag = d.currentScript || d.querySelector('script[src*="/t."]');
    const option = (name) => (tag && tag.getAttribute('data-' + name)) || '';
    const endpoint = option('endpoint') || new URL(tag.src).origin + '/e';
    const consentRequired = option('consent') === 'required';

    // 2. Privacy. Storage can be missing, blocked or throwing (Safari private mode, blocked
    // cookies): each access goes through read() and write(), where a failure is an empty store.
    const refused = /^(1|yes)$/.test(nav.doNotTrack || w.doNotTrack || '') ||
      nav.globalPrivacyControl === true;
    const read = (area) => {
      try {
        return JSON.parse(w[area].getItem(KEY)) || {};
      } catch (e) {
        return {};
      }
    };
    const write = (area, value) => {
      try {
        if (value) w[area].setItem(KEY, JSON.stringify(value));
        else w[area].removeItem(KEY);
      } catch (e) {
        // blocked storage: the value lives in memory only
      }
    };
    // local: {uid, consent, q} in localStorage; session: {sid, seq, utm} in sessionStorage.
    let local = read('localStorage');
    let session = read('sessionStorage');
    // undefined: not given (yet); true or false: pixel('consent', ...) said so.
    let consent = local.consent ? true : undefined;
    const allowed = () => !refused && (consent === true || (!consentRequired && consent !== false));
    const save = () => {
      if (!allowed()) return;
      write('localStorage', {uid: local.uid, consent: consent || undefined, q: queue});
      write('sessionStorage', session);
    };
    const forget = () => {
      local = {};
      session = {};
      write('localStorage');
      write('sessionStorage');
    };
    if (!allowed()) forget();

    // 3. Identifiers: random, made on this device, never derived from anything about it.
    const uuid = () => {
      const c = w.crypto;
      if (c.randomUUID) return c.randomUUID();
      const b = c.getRandomValues(new Uint8Array(16));
      b[6] = (b[6] & 15) | 64;
      b[8] = (b[8] & 63) | 128;
      let s = '';
      b.forEach((x, i) => {
        const hex = (x + 256).toString(16).slice(1);
        s += (i === 4 || i === 6 || i === 8 || i === 10 ? '-' : '') + hex;
      });
      return s;
    };
    // The landing URL's UTM values replace the session's; other pages keep them.
    let utm = session.utm || {};
    const captureUtm = () => {
      const query = new URLSearchParams(location.search);
      const found = {};
      let any = false;
      UTM.forEach((k) => {
        const v = query.get(k);
        if (v) {
          found[k] = v.slice(0, MAX_CHARS);
          any = true;
        }
      });
      if (any) utm = session.utm = found;
    };

    // 4. Events (docs/events.md): flat params, at most MAX_PARAMS, device context first.
    let tz;
    try {
      tz = Intl.DateTimeFormat().resolvedOptions().timeZone;
    } catch (e) {
      tz = undefined;
    }
    const flat = (v) => {
      if (v === null || v === undefined || typeof v === 'boolean') return v;
      // JSON numbers beyond 2^53 lose digits in most readers: the server refuses them
      if (typeof v === 'number') {
        if (!isFinite(v)) return null;
        return Number.isInteger(v) && !Number.isSafeInteger(v) ? String(v) : v;
      }
      if (typeof v !== 'string') v = typeof v === 'object' ? JSON.stringify(v) : String(v);
      return v.slice(0, MAX_CHARS);
    };
    let ref = d.referrer;
    const build = (name, extra) => {
      const params = {
        screen: screen.width + 'x' + screen.height,
        viewport: w.innerWidth + 'x' + w.innerHeight,
        lang: nav.language,
        tz: tz,
      };
      let n = 4;
      Object.keys(extra || {}).forEach((k) => {
        const key = k.slice(0, 64);
        if (!key || (!(key in params) && n >= MAX_PARAMS)) return;
        if (!(key in params)) n++;
        params[key] = flat(extra[k]);
      });
      const e = {name: String(name), eid: uuid(), url: location.href.slice(0, MAX_CHARS)};
      Object.assign(e, utm);
      if (ref) e.ref = ref.slice(0, MAX_CHARS);
      if (allowed()) {
        local.uid = local.uid || uuid();
        if (!session.sid) session = {sid: uuid(), seq: 0, utm: session.utm};
        e.sid = session.sid;
        e.uid = local.uid;
        e.seq = session.seq = (session.seq || 0) + 1;
      }
      e.params = params;
      return e;
    };

    // 5. Sending. queue holds {e: event, n: tries} until the server has answered for it;
    // it is saved (localStorage, where allowed) so that the next page load sends what is left.
    let queue = allowed() && Array.isArray(local.q) ? local.q.filter((i) => i && i.e) : [];
    queue = queue.slice(-MAX_QUEUE);
    let timer = 0;
    let busy = false;
    let fails = 0;
    const body = (items) => JSON.stringify(items.map((i) => i.e));
    const schedule = (ms) => {
      if (timer && ms === 0 && !fails) {
        clearTimeout(timer);
        timer = 0;
      }
      if (!timer && queue.length) timer = setTimeout(safe(flush), ms);
    };
    const enqueue = (e) => {
      queue.push({e: e, n: 0});
      if (queue.length > MAX_QUEUE) queue.splice(0, queue.length - MAX_QUEUE);
      save();
      schedule(queue.length >= BATCH ? 0 : FLUSH_MS);
    };
    // wait: 0 when the batch is done with (stored, duplicate, or refused for good), else the
    // seconds the server asked for in Retry-After (-1: none, use exponential backoff).
    const done = (batch, wait) => {
      busy = false;
      if (wait === 0) {
        fails = 0;
        queue = queue.filter((i) => batch.indexOf(i) < 0);
      } else {
        fails++;
        queue = queue.filter((i) => i.n < MAX_TRIES);
      }
      save();
      const backoff = Math.min(60000, 1000 * Math.pow(2, fails - 1)) * (0.5 + Math.random() / 2);
      schedule(wait === 0 ? 0 : wait > 0 ? Math.min(wait, 300) * 1000 : backoff);
    };
    const flush = () => {
      timer = 0;
      if (busy || !queue.length) return;
      busy = true;
      const batch = queue.slice(0, BATCH);
      batch.forEach((i) => i.n++);
      save();
      fetch(endpoint, {
        method: 'POST',
        keepalive: true,
        credentials: 'omit',
        headers: {'Content-Type': 'text/plain'},
        body: body(batch),
      }).then(safe((r) => {
        // A 4xx will not get better by sending it again; 429 and 5xx may.
        const again = r.status === 429 || r.status >= 500;
        done(batch, again ? parseInt(r.headers.get('Retry-After'), 10) || -1 : 0);
      }), safe(() => {
        // A network error, or an answer without Access-Control-Allow-Origin, which the
        // browser hides: the events may have been stored, and their eid makes a retry safe.
        done(batch, -1);
      }));
    };
    // The page is going away or out of sight: hand everything to sendBeacon, which outlives
    // the page. While the server is failing, keep a saved copy for the next page load too.
    const hide = () => {
      Object.keys(waiting).forEach(fire);
      let sent = !!nav.sendBeacon;
      for (let i = 0; sent && i < queue.length; i += BATCH) {
        sent = nav.sendBeacon(endpoint, body(queue.slice(i, i + BATCH)));
      }
      if (sent && !fails) queue = [];
      save();
    };

    // 6. Commands: pixel('track', name, params, {debounce: ms}), pixel('page'),
    // pixel('consent', true|false).
    const waiting = {};
    const fire = (name) => {
      const last = waiting[name];
      delete waiting[name];
      clearTimeout(last.t);
      enqueue(build(name, last.p));
    };
    const track = (name, params, opts) => {
      const ms = opts && opts.debounce;
      if (!(ms > 0)) return enqueue(build(name, params));
      if (waiting[name]) clearTimeout(waiting[name].t);
      waiting[name] = {p: params, t: setTimeout(safe(() => fire(name)), ms)};
    };
    let here = '';
    const page = () => {
      captureUtm();
      here = location.href.split('#')[0];
      track('page_view');
    };
    const commands = {
      track: track,
      page: page,
      consent: (yes) => {
        if (yes) {
          consent = true;
          save();
        } else {
          consent = false;
          forget();
        }
      },
    };
    const pixel = safe((command, ...args) => {
      if (commands[command]) commands[command].apply(null, args);
    });
    pixel.loaded = true;
    w.pixel = pixel;

    // 7. Calls queued before this script ran (window.pixelq), in order; then the page view.
    const pixelq = Array.isArray(w.pixelq) ? w.pixelq : (w.pixelq = []);
    const early = pixelq.splice(0);
    pixelq.push = safe(function () {
      for (let i = 0; i < arguments.length; i++) pixel.apply(null, arguments[i]);
      return 0;
    });
    early.forEach((call) => pixel.apply(null, call));
    page();

    // 8. Listeners: one delegated click listener (capturing, so that handlers which stop
    // propagation cannot hide clicks), page hiding, and with data-spa="history" route changes.
    d.addEventListener('click', safe((ev) => {
      const el = ev.target && ev.target.closest && ev.target.closest('[data-track]');
      if (!el) return;
      const params = {};
      for (const a of el.attributes) {
        const key = a.name.indexOf('data-track-') === 0 && a.name.slice(11).replace(/-/g, '_');
        if (key) params[key] = a.value;
      }
      track(el.getAttribute('data-track'), params);
    }), true);
    d.addEventListener('visibilitychange', safe(() => {
      if (d.visibilityState === 'hidden') hide();
    }));
    w.addEventListener('pagehide', safe(hide));
    if (option('spa') === 'history') {
      const route = safe(() => {
        if (location.href.split('#')[0] === here) return;
        ref = here;
        page();
      });
      ['pushState', 'replaceState'].forEach((m) => {
        const original = history[m];
        history[m] = function () {
          const result = original.apply(this, arguments);
          route();
          return result;
        };
      });
      w.addEventListener('popstate', route);
    }
    schedule(FLUSH_MS);
  })();
} catch (e) {
  // a tracker that cannot start (no script tag URL, an old browser) stays silent
}
