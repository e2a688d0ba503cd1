'use strict';
// The waiting-room page (spec §4.14): reads the agenda view (GET /teleconsultations/:id) for
// the schedule, and the join (GET /teleconsultation/:id) for the caller's own link once it is
// due. Same origin only; the service's answers decide, the browser's clock only counts down.
(function () {
  // How often the page asks again while waiting, and while a due link is not there yet.
  const POLL_MS = 15000;
  const SOON_MS = 3000;
  const MAX_RETRY_S = 30;
  const LINK_LANGUAGES = ['it', 'en', 'pl', 'fr', 'de'];

  const TEXTS = {
    en: {
      title: 'Teleconsultation',
      loading: 'Loading your consultation…',
      when: 'When',
      participants: 'Participants',
      you: '(you)',
      opensIn: 'The link opens in',
      opensInSpoken: 'The link opens in {t}',
      waiting: 'You can join from {time}. This page updates by itself.',
      preparing: 'The room is being prepared. This page updates by itself.',
      ready: 'You can join the consultation now.',
      join: 'Join',
      newTab: 'Open in a new tab',
      leave: 'Leave the call',
      frame: 'Video call',
      ended: 'This consultation has ended.',
      cancelled: 'This consultation does not exist or was cancelled.',
      notParticipant: 'You are not a participant of this consultation.',
      network: 'The service cannot be reached. Trying again in {s} s…',
      failed: 'The service could not answer (HTTP {status}). Trying again in {s} s…',
      retry: 'Try again now',
      minutes: '{m} min',
      days: 'd',
    },
    it: {
      title: 'Teleconsulto',
      loading: 'Caricamento del teleconsulto…',
      when: 'Quando',
      participants: 'Partecipanti',
      you: '(tu)',
      opensIn: 'Il link si apre tra',
      opensInSpoken: 'Il link si apre tra {t}',
      waiting: 'Potrai entrare a partire da {time}. La pagina si aggiorna da sola.',
      preparing: 'La stanza è in preparazione. La pagina si aggiorna da sola.',
      ready: 'Ora puoi entrare nel teleconsulto.',
      join: 'Entra',
      newTab: 'Apri in una nuova scheda',
      leave: 'Esci dalla chiamata',
      frame: 'Videochiamata',
      ended: 'Questo teleconsulto è terminato.',
      cancelled: 'Questo teleconsulto non esiste o è stato annullato.',
      notParticipant: 'Non sei un partecipante di questo teleconsulto.',
      network: 'Il servizio non è raggiungibile. Nuovo tentativo tra {s} s…',
      failed: 'Il servizio non ha potuto rispondere (HTTP {status}). Nuovo tentativo tra {s} s…',
      retry: 'Riprova ora',
      minutes: '{m} min',
      days: 'g',
    },
  };

  const $ = (id) => document.getElementById(id);
  const root = document.documentElement;

  // A bearer token comes in the fragment (never sent to a server); it is taken out of the
  // address at once, so that it stays out of the history too, and kept in memory only.
  let token = null;
  if (location.hash.length > 1) {
    token = new URLSearchParams(location.hash.slice(1)).get('access_token');
    history.replaceState(null, '', location.pathname + location.search);
  }
  // Only `telecons demo` serves the page with this attribute: the participant named by
  // `?as=` is sent as the gateway would send it. `serve` never does.
  const demoHeader = root.dataset.demoUserHeader || null;
  const demoUser = demoHeader ? new URLSearchParams(location.search).get('as') : null;

  const roomId = decodeURIComponent(location.pathname.split('/')[2] || '');
  const browserLanguages = (navigator.languages && navigator.languages.length
    ? navigator.languages
    : [navigator.language || 'en']).map((l) => String(l).slice(0, 2).toLowerCase());

  let language = pageLanguage(null);
  let texts = TEXTS[language];
  let timer = null;
  let ticker = null;
  let failures = 0;
  let loading = false;
  let lastAnnounced = null;
  let countingTo = null;

  function pageLanguage(stored) {
    if (stored && TEXTS[stored]) return stored;
    return browserLanguages.find((l) => TEXTS[l]) || 'en';
  }

  function fill(text, values) {
    return text.replace(/\{(\w+)\}/g, (_, key) => String(values[key]));
  }

  function setLanguage(stored) {
    language = pageLanguage(stored);
    texts = TEXTS[language];
    root.lang = language;
    document.title = texts.title;
    $('title').textContent = texts.title;
    $('countdown-label').textContent = texts.opensIn;
    $('join-button').textContent = texts.join;
    $('join-tab').textContent = texts.newTab;
    $('leave').textContent = texts.leave;
    $('call-frame').title = texts.frame;
    $('retry').textContent = texts.retry;
    $('when-label').textContent = texts.when;
    $('participants-label').textContent = texts.participants;
  }

  function show(state, message) {
    document.body.dataset.state = state;
    // Only a change is announced: every poll would otherwise repeat the same words.
    if ($('status').textContent !== message) $('status').textContent = message;
    $('join').hidden = state !== 'join';
    $('retry').hidden = state !== 'network' && state !== 'error';
    // Nothing to show of a consultation that is not, or not the caller's.
    if (state === 'cancelled' || state === 'not-participant') $('details').hidden = true;
    if (state !== 'waiting') stopCountdown();
  }

  async function api(path) {
    const headers = { Accept: 'application/json' };
    if (token) headers.Authorization = 'Bearer ' + token;
    if (demoHeader && demoUser) headers[demoHeader] = demoUser;
    const response = await fetch(path, {
      headers,
      cache: 'no-store',
      credentials: 'same-origin',
      redirect: 'error',
    });
    let body = null;
    try {
      body = await response.json();
    } catch (_) {
      body = null;
    }
    return { status: response.status, body };
  }

  // An answer the service should not give here: retried like a network failure.
  function Unexpected(status) {
    this.status = status;
  }

  const roomPath = encodeURIComponent(roomId);

  // One look at the consultation; returns when to look again (null: never).
  async function load() {
    const view = await api('/teleconsultations/' + roomPath);
    if (view.status === 401) return finish('not-participant', texts.notParticipant);
    if (view.status === 404) {
      // The agenda does not tell a stranger whether the id exists; the join route does
      // (404 unknown or cancelled, then 401 not a participant).
      const join = await api('/teleconsultation/' + roomPath);
      if (join.status === 401) return finish('not-participant', texts.notParticipant);
      if (join.status === 404) return finish('cancelled', texts.cancelled);
      throw new Unexpected(join.status);
    }
    if (view.status !== 200 || !view.body) throw new Unexpected(view.status);
    const consultation = view.body;
    setLanguage(consultation.you && consultation.you.language);
    renderDetails(consultation);
    if (consultation.status === 'ended') return finish('ended', texts.ended);

    const opensAt = Date.parse(consultation.linksOpenAt);
    if (consultation.status === 'scheduled' && Date.now() < opensAt) {
      show('waiting', fill(texts.waiting, { time: formatDate(opensAt) }));
      startCountdown(opensAt);
      // Again right at the moment, else every POLL_MS (a change of schedule shows).
      return Math.min(POLL_MS, opensAt - Date.now() + 250);
    }
    if (consultation.room !== 'ready') {
      show('preparing', texts.preparing);
      return SOON_MS;
    }
    const stored = consultation.you && consultation.you.language;
    const linkLanguage = stored ? null : browserLanguages.find((l) => LINK_LANGUAGES.includes(l));
    const query = linkLanguage ? '?language=' + linkLanguage : '';
    const join = await api('/teleconsultation/' + roomPath + query);
    if (join.status === 401) return finish('not-participant', texts.notParticipant);
    if (join.status === 404) return finish('cancelled', texts.cancelled);
    if (join.status !== 200 || !join.body) throw new Unexpected(join.status);
    const link = join.body.accessLinkURL;
    if (!link) {
      // Due by this browser's clock, not yet by the service's (or the room is being
      // replaced): never a link early.
      show('preparing', texts.preparing);
      return SOON_MS;
    }
    offerJoin(link);
    return POLL_MS;
  }

  function finish(state, message) {
    show(state, message);
    return null;
  }

  async function refresh() {
    // One look at a time: the countdown's end and the timer may both ask.
    if (loading) return;
    loading = true;
    clearTimeout(timer);
    let next;
    try {
      next = await load();
      failures = 0;
    } catch (error) {
      failures += 1;
      const wait = Math.min(MAX_RETRY_S, 2 ** failures);
      if (error instanceof Unexpected) {
        show('error', fill(texts.failed, { status: error.status, s: wait }));
      } else {
        show('network', fill(texts.network, { s: wait }));
      }
      next = wait * 1000;
    }
    loading = false;
    if (next !== null) timer = setTimeout(refresh, next);
  }

  function formatDate(instant) {
    // The browser's locale and time zone.
    return new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'short' })
      .format(new Date(instant));
  }

  function renderDetails(consultation) {
    const start = Date.parse(consultation.startDate);
    const end = Date.parse(consultation.endDate);
    const minutes = Math.round((end - start) / 60000);
    $('when').textContent = formatDate(start) + ' · ' + fill(texts.minutes, { m: minutes });
    const list = $('participants');
    list.replaceChildren();
    const me = consultation.you && consultation.you.userId;
    for (const participant of consultation.participants) {
      const item = document.createElement('li');
      item.textContent = participant.fullName
        + (participant.userId === me ? ' ' + texts.you : '');
      list.append(item);
    }
    $('details').hidden = false;
  }

  function remaining(opensAt) {
    return Math.max(0, Math.ceil((opensAt - Date.now()) / 1000));
  }

  function formatSeconds(total) {
    const days = Math.floor(total / 86400);
    const two = (n) => String(n).padStart(2, '0');
    const clock = two(Math.floor(total / 3600) % 24) + ':' + two(Math.floor(total / 60) % 60)
      + ':' + two(total % 60);
    return days > 0 ? days + ' ' + texts.days + ' ' + clock : clock;
  }

  function startCountdown(opensAt) {
    // Asked again while counting to the same moment: go on (and do not announce anew).
    if (ticker !== null && countingTo === opensAt) return;
    stopCountdown();
    countingTo = opensAt;
    $('countdown-box').hidden = false;
    const tick = () => {
      const left = remaining(opensAt);
      $('countdown').textContent = formatSeconds(left);
      // Screen readers hear it now and then, not every second.
      const due = lastAnnounced === null || (left > 60 ? left % 60 === 0 : left === 30 || left === 10);
      if (due && left !== lastAnnounced) {
        lastAnnounced = left;
        $('announce').textContent = fill(texts.opensInSpoken, { t: formatSeconds(left) });
      }
      if (left === 0) {
        stopCountdown();
        refresh();
      }
    };
    tick();
    ticker = setInterval(tick, 1000);
  }

  function stopCountdown() {
    clearInterval(ticker);
    ticker = null;
    countingTo = null;
    lastAnnounced = null;
    $('countdown-box').hidden = true;
  }

  function offerJoin(link) {
    const wasShown = document.body.dataset.state === 'join';
    $('join-tab').href = link;
    $('join-button').dataset.link = link;
    if (!wasShown) show('join', texts.ready);
  }

  $('join-button').addEventListener('click', () => {
    $('call-frame').src = $('join-button').dataset.link;
    $('call').hidden = false;
    document.body.dataset.call = 'open';
    $('leave').focus();
  });
  $('leave').addEventListener('click', () => {
    $('call-frame').src = 'about:blank';
    $('call').hidden = true;
    delete document.body.dataset.call;
    $('join-button').focus();
  });
  $('retry').addEventListener('click', refresh);

  setLanguage(null);
  $('status').textContent = texts.loading;
  refresh();
}());
