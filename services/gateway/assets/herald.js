// Herald demo client: a small hand-written client of the Centrifugo JSON protocol over the
// browser's WebSocket (connect with a token, server-side and client-side subscriptions,
// recovery on reconnect, server pings, reconnect with backoff), and the demo page built on it.
// It deliberately leaves out what the demo does not need (RPC, presence, delta, emulation).
'use strict';

(function () {
  // Close codes after which reconnecting cannot help (protocol.md §1.7).
  function isTerminal(code) {
    return (code >= 3500 && code < 4000) || (code >= 4500 && code < 5000) || code === 1009;
  }

  /**
   * new HeraldClient(url, { getToken, name, minDelay, maxDelay })
   * getToken(): Promise<string> is called before every connection attempt.
   * Events (client.on(name, fn)): 'state' (connecting|connected|disconnected, detail),
   * 'publication' ({channel, data, offset}), 'subscribed' ({channel, ...result}), 'error'.
   */
  function HeraldClient(url, opts) {
    this.url = url;
    this.opts = Object.assign({ name: 'herald-demo', minDelay: 500, maxDelay: 20000 }, opts || {});
    this.state = 'disconnected';
    this.ws = null;
    this.nextId = 1;
    this.pending = {};        // id -> {resolve, reject}
    this.subs = {};           // client-side: channel -> {recoverable, offset, epoch, subscribed}
    this.serverSubs = {};     // server-side (from connect.subs): channel -> {recoverable, offset, epoch}
    this.handlers = {};
    this.attempts = 0;
    this.sendPong = false;
    this.pingTimer = null;
    this.retryTimer = null;
    this.refreshTimer = null;
    this.closedByUser = false;
  }

  HeraldClient.prototype.on = function (event, fn) {
    (this.handlers[event] = this.handlers[event] || []).push(fn);
    return this;
  };

  HeraldClient.prototype.emit = function (event, arg) {
    (this.handlers[event] || []).forEach(function (fn) {
      try { fn(arg); } catch (e) { console.error(e); }
    });
  };

  HeraldClient.prototype.setState = function (state, detail) {
    if (this.state === state) return;
    this.state = state;
    this.emit('state', { state: state, detail: detail || '' });
  };

  HeraldClient.prototype.connect = function () {
    this.closedByUser = false;
    if (this.ws) return;
    this.setState('connecting');
    this.open();
  };

  HeraldClient.prototype.disconnect = function () {
    this.closedByUser = true;
    clearTimeout(this.retryTimer);
    this.teardown();
    this.setState('disconnected', 'disconnect called');
  };

  HeraldClient.prototype.subscribe = function (channel) {
    if (!this.subs[channel]) this.subs[channel] = { recoverable: false, offset: 0, epoch: '', subscribed: false };
    if (this.state === 'connected') this.sendSubscribes([channel]);
  };

  HeraldClient.prototype.open = function () {
    var self = this;
    Promise.resolve(this.opts.getToken ? this.opts.getToken() : '').then(function (token) {
      if (self.closedByUser || self.ws) return;
      var ws = new WebSocket(self.url);
      self.ws = ws;
      ws.onopen = function () { self.sendConnect(token); };
      ws.onmessage = function (ev) { self.onFrame(ev.data); };
      ws.onclose = function (ev) { if (self.ws === ws) self.onClose(ev.code, ev.reason); };
    }, function (err) {
      self.emit('error', { type: 'token', error: String(err) });
      self.scheduleReconnect('token: ' + err);
    });
  };

  HeraldClient.prototype.teardown = function () {
    clearTimeout(this.pingTimer);
    clearTimeout(this.refreshTimer);
    var pending = this.pending;
    this.pending = {};
    Object.keys(pending).forEach(function (id) { pending[id].reject({ code: 0, message: 'connection closed' }); });
    Object.keys(this.subs).forEach(function (ch) { this.subs[ch].subscribed = false; }, this);
    if (this.ws) {
      var ws = this.ws;
      this.ws = null;
      try { ws.close(1000); } catch (e) { /* already closed */ }
    }
  };

  HeraldClient.prototype.onClose = function (code, reason) {
    this.teardown();
    if (this.closedByUser) return;
    if (isTerminal(code)) {
      this.setState('disconnected', code + ' ' + reason);
      return;
    }
    this.scheduleReconnect(code + ' ' + reason);
  };

  HeraldClient.prototype.scheduleReconnect = function (why) {
    this.setState('connecting', why);
    // Full jitter exponential backoff, so that many clients dropped together spread out.
    var cap = Math.min(this.opts.maxDelay, this.opts.minDelay * Math.pow(2, this.attempts));
    var delay = this.opts.minDelay / 2 + Math.random() * cap;
    this.attempts += 1;
    var self = this;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(function () { if (!self.closedByUser) self.open(); }, delay);
  };

  HeraldClient.prototype.send = function (cmds) {
    if (!this.ws || this.ws.readyState !== 1) return;
    this.ws.send(cmds.map(function (c) { return JSON.stringify(c); }).join('\n'));
  };

  // Sends commands in one frame; resolves each with its reply's result, rejects with its error.
  HeraldClient.prototype.call = function (cmds) {
    var self = this;
    var promises = cmds.map(function (cmd) {
      cmd.id = self.nextId++;
      return new Promise(function (resolve, reject) { self.pending[cmd.id] = { resolve: resolve, reject: reject }; });
    });
    this.send(cmds);
    return promises;
  };

  function position(entry) {
    return entry && entry.recoverable && entry.epoch ? { recover: true, offset: entry.offset, epoch: entry.epoch } : null;
  }

  HeraldClient.prototype.sendConnect = function (token) {
    var req = { name: this.opts.name };
    if (token) req.token = token;
    // Server-side subscriptions are recovered through the connect command (connect.subs).
    var subs = {};
    var any = false;
    Object.keys(this.serverSubs).forEach(function (ch) {
      var pos = position(this.serverSubs[ch]);
      if (pos) { subs[ch] = pos; any = true; }
    }, this);
    if (any) req.subs = subs;
    var self = this;
    this.call([{ connect: req }])[0].then(function (result) {
      self.onConnected(result);
    }, function (err) {
      if (!err || !err.code) return;
      self.emit('error', { type: 'connect', error: err });
      // 109: the token expired; the next attempt gets a new one. Temporary errors retry too.
      self.teardown();
      if (err.code === 109 || err.temporary || err.code < 100) self.scheduleReconnect(err.message);
      else self.setState('disconnected', err.code + ' ' + err.message);
    });
  };

  HeraldClient.prototype.onConnected = function (result) {
    this.attempts = 0;
    this.sendPong = result.pong === true;
    this.pingInterval = (result.ping || 0) * 1000;
    this.armPingWatchdog();
    if (result.expires && result.ttl) this.scheduleRefresh(result.ttl);
    this.setState('connected', result.client || '');
    var subs = result.subs || {};
    var seen = {};
    Object.keys(subs).forEach(function (ch) {
      seen[ch] = true;
      this.onSubscribed(ch, subs[ch], this.serverSubs);
    }, this);
    Object.keys(this.serverSubs).forEach(function (ch) { if (!seen[ch]) delete this.serverSubs[ch]; }, this);
    this.sendSubscribes(Object.keys(this.subs));
  };

  HeraldClient.prototype.sendSubscribes = function (channels) {
    var self = this;
    channels = channels.filter(function (ch) { return !self.subs[ch].subscribed && !self.subs[ch].inflight; });
    if (channels.length === 0) return;
    var cmds = channels.map(function (ch) {
      var req = Object.assign({ channel: ch }, position(self.subs[ch]) || {});
      self.subs[ch].inflight = true;
      return { subscribe: req };
    });
    this.call(cmds).forEach(function (p, i) {
      var ch = channels[i];
      p.then(function (result) {
        self.subs[ch].inflight = false;
        self.onSubscribed(ch, result, self.subs);
      }, function (err) {
        if (self.subs[ch]) self.subs[ch].inflight = false;
        if (err && err.code) self.emit('error', { type: 'subscribe', channel: ch, error: err });
      });
    });
  };

  HeraldClient.prototype.onSubscribed = function (channel, result, table) {
    var entry = table[channel] || (table[channel] = {});
    entry.subscribed = true;
    entry.recoverable = !!result.recoverable;
    if (result.epoch) entry.epoch = result.epoch;
    if (result.offset !== undefined) entry.offset = result.offset;
    this.emit('subscribed', Object.assign({ channel: channel }, result));
    (result.publications || []).forEach(function (pub) { this.onPublication(channel, pub); }, this);
  };

  HeraldClient.prototype.onPublication = function (channel, pub) {
    var entry = this.subs[channel] || this.serverSubs[channel];
    if (entry && typeof pub.offset === 'number') entry.offset = pub.offset;
    if (entry && pub.epoch) entry.epoch = pub.epoch;
    this.emit('publication', { channel: channel, data: pub.data, offset: pub.offset });
  };

  HeraldClient.prototype.armPingWatchdog = function () {
    clearTimeout(this.pingTimer);
    if (!this.pingInterval) return;
    var self = this;
    // Nothing at all within ping interval + 10 s: the link is dead even if TCP has not noticed.
    this.pingTimer = setTimeout(function () {
      if (self.ws) { self.ws.onclose = null; self.onClose(0, 'no ping'); }
    }, this.pingInterval + 10000);
  };

  HeraldClient.prototype.scheduleRefresh = function (ttl) {
    var self = this;
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(function () {
      Promise.resolve(self.opts.getToken()).then(function (token) {
        return self.call([{ refresh: { token: token } }])[0];
      }).then(function (r) {
        if (r.expires && r.ttl) self.scheduleRefresh(r.ttl);
      }, function (err) {
        self.emit('error', { type: 'refresh', error: err });
      });
    }, Math.max(1, ttl) * 1000);
  };

  HeraldClient.prototype.onFrame = function (text) {
    this.armPingWatchdog();
    var lines = String(text).trim().split('\n');
    for (var i = 0; i < lines.length; i++) {
      if (!lines[i]) continue;
      var msg;
      try { msg = JSON.parse(lines[i]); } catch (e) {
        this.emit('error', { type: 'protocol', error: 'bad frame' });
        continue;
      }
      this.onMessage(msg);
    }
  };

  HeraldClient.prototype.onMessage = function (msg) {
    if (msg.id) {
      var waiter = this.pending[msg.id];
      delete this.pending[msg.id];
      if (!waiter) return;
      if (msg.error) { waiter.reject(msg.error); return; }
      for (var key in msg) {
        if (key !== 'id') { waiter.resolve(msg[key]); return; }
      }
      waiter.resolve({});
      return;
    }
    if (msg.push) { this.onPush(msg.push); return; }
    // An empty object is the server's ping (protocol.md §1.2): answer it with an empty command.
    if (this.sendPong) this.send([{}]);
  };

  HeraldClient.prototype.onPush = function (push) {
    var ch = push.channel;
    if (push.pub) {
      this.onPublication(ch, push.pub);
    } else if (push.subscribe) {
      this.onSubscribed(ch, push.subscribe, this.serverSubs);
    } else if (push.unsubscribe) {
      // Codes >= 2500 ask for a resubscribe; lower ones end the subscription (protocol.md §1.6).
      if (this.subs[ch] && push.unsubscribe.code >= 2500) {
        this.subs[ch].subscribed = false;
        this.sendSubscribes([ch]);
      } else {
        delete this.subs[ch];
        delete this.serverSubs[ch];
      }
    } else if (push.disconnect) {
      this.onClose(push.disconnect.code, push.disconnect.reason || '');
    }
  };

  window.HeraldClient = HeraldClient;

  // ---- the demo page ----------------------------------------------------------------------

  function $(id) { return document.getElementById(id); }

  // `?token=<JWT>` (a token from `herald gentoken`) works on any install; without one the page
  // asks the dev-mode endpoint `/dev/token` for a token of `?user=` or a random guest.
  function tokenFromQuery() {
    return new URLSearchParams(location.search).get('token');
  }

  function userFromQuery(token) {
    if (token) {
      try {
        var claims = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
        return JSON.parse(atob(claims)).sub;
      } catch (e) {
        return 'unknown';
      }
    }
    var user = new URLSearchParams(location.search).get('user');
    return user || 'guest-' + String(Math.floor(1000 + Math.random() * 9000));
  }

  function timeNow() {
    return new Date().toLocaleTimeString([], { hour12: false });
  }

  function start() {
    var givenToken = tokenFromQuery();
    var user = userFromQuery(givenToken);
    var personal = 'user:' + user;
    var ticker = 'stock:HRLD';
    $('user').textContent = user;
    $('personal-channel').textContent = personal;
    $('publish-channel').value = personal;

    var status = $('status');
    function showState(ev) {
      status.textContent = ev.state;
      status.className = 'badge ' + ev.state;
      status.title = ev.detail || '';
    }

    var lastPrice = null;
    function showTicker(data) {
      if (!data || typeof data.price !== 'number') return;
      var el = $('ticker');
      el.textContent = data.price.toFixed(2);
      el.className = 'price' + (lastPrice === null ? '' : data.price > lastPrice ? ' up' : data.price < lastPrice ? ' down' : '');
      lastPrice = data.price;
      $('ticker-time').textContent = timeNow();
    }

    function showPersonal(pub) {
      var list = $('personal');
      var empty = list.querySelector('.empty');
      if (empty) empty.remove();
      var li = document.createElement('li');
      var meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = timeNow() + (typeof pub.offset === 'number' ? ' #' + pub.offset : '');
      var code = document.createElement('code');
      code.textContent = JSON.stringify(pub.data);
      li.appendChild(meta);
      li.appendChild(code);
      list.insertBefore(li, list.firstChild);
      while (list.children.length > 50) list.removeChild(list.lastChild);
    }

    var proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    var client = new HeraldClient(proto + '//' + location.host + '/connection/websocket', {
      getToken: function () {
        if (givenToken) return givenToken;
        return fetch('/dev/token?user=' + encodeURIComponent(user)).then(function (res) {
          if (!res.ok) throw new Error('token endpoint answered ' + res.status);
          return res.json();
        }).then(function (body) { return body.token; });
      },
    });
    client.on('state', showState);
    client.on('publication', function (pub) {
      if (pub.channel === personal) showPersonal(pub);
      else if (pub.channel === ticker) showTicker(pub.data);
    });
    client.on('error', function (e) { console.warn('herald:', e); });
    client.subscribe(ticker);
    client.connect();
    window.heraldDemo = { client: client, user: user };

    $('publish-form').addEventListener('submit', function (ev) {
      ev.preventDefault();
      var result = $('publish-result');
      var data;
      try {
        data = JSON.parse($('publish-data').value);
      } catch (e) {
        result.textContent = 'data is not valid JSON: ' + e.message;
        result.className = 'result error';
        return;
      }
      var button = $('publish-submit');
      button.disabled = true;
      result.textContent = 'publishing…';
      result.className = 'result';
      fetch('/dev/api/publish', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel: $('publish-channel').value.trim(), data: data }),
      }).then(function (res) {
        return res.text().then(function (text) {
          var body;
          try { body = JSON.parse(text); } catch (e) { throw new Error('HTTP ' + res.status + ': ' + text); }
          if (body.error) throw new Error('error ' + body.error.code + ': ' + body.error.message);
          if (!res.ok) throw new Error('HTTP ' + res.status);
          var r = body.result || {};
          result.textContent = 'published' + (r.offset !== undefined ? ' · offset ' + r.offset : '') +
            (r.epoch ? ' · epoch ' + r.epoch : '');
          result.className = 'result ok';
        });
      }).catch(function (e) {
        result.textContent = e.message;
        result.className = 'result error';
      }).then(function () { button.disabled = false; });
    });
  }

  if (document.getElementById('status')) {
    if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
    else start();
  }
})();
