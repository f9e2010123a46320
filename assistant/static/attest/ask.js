/* Attest: ask with streamed answers (server-sent events over fetch), and stop.
   No dependencies; loaded from this server only (the CSP allows no inline script).
   Without JavaScript the form posts normally and the answer page is shown.
   Streamed tokens are a draft until the checked answer arrives ("done"): the page says so
   while they come, and replaces them with the withdrawal when the answer could not be
   recorded ("withdrawn"), or when the stream ends without an answer. */
(function () {
  "use strict";

  function parseEvents(buffer, onEvent) {
    var parts = buffer.split("\n\n");
    var rest = parts.pop();
    parts.forEach(function (block) {
      var name = "message", data = "";
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event: ") === 0) name = line.slice(7);
        else if (line.indexOf("data: ") === 0) data += line.slice(6);
      });
      if (data) onEvent(name, JSON.parse(data));
    });
    return rest;
  }

  function start(form) {
    var panel = document.getElementById("stream");
    var status = document.getElementById("stream-status");
    var notice = document.getElementById("stream-draft");
    var text = document.getElementById("stream-text");
    var ask = form.querySelector("#ask-button");
    var stop = form.querySelector("#stop-button");
    var controller = new AbortController();
    var tokens = 0;
    var settled = false;  // a checked answer, or a withdrawal, has arrived
    var thinkingTimer = null;
    panel.hidden = false;
    panel.dataset.state = "running";
    panel.dataset.tokens = "0";
    delete panel.dataset.draft;
    status.textContent = "Searching the documents…";
    if (notice) { notice.hidden = true; notice.textContent = ""; }
    text.className = "answer-text";
    text.textContent = "";
    ask.disabled = true;
    stop.hidden = false;
    stop.focus();
    stop.onclick = function () { controller.abort(); };

    // A reasoning model thinks before it answers: say so, and for how long; its thinking
    // itself is never sent.
    function thinking() {
      if (thinkingTimer) return;
      var since = Date.now();
      panel.dataset.thinking = "running";
      status.textContent = "The model is thinking…";
      thinkingTimer = window.setInterval(function () {
        status.textContent = "The model is thinking… " + Math.round((Date.now() - since) / 1000) + " s";
      }, 1000);
    }

    function thought(seconds) {
      if (thinkingTimer) window.clearInterval(thinkingTimer);
      thinkingTimer = null;
      panel.dataset.thinking = "done";
      if (seconds !== null && seconds !== undefined) {
        panel.dataset.thoughtSeconds = String(seconds);
        status.textContent = "The model thought for " + seconds.toFixed(1) + " s; answering…";
      }
    }

    function finish(state, message) {
      if (thinkingTimer) window.clearInterval(thinkingTimer);
      thinkingTimer = null;
      panel.dataset.state = state;
      ask.disabled = false;
      stop.hidden = true;
      if (message) status.textContent = message;
    }

    // The draft is not an answer: take it off the page and say why.
    function withdraw(message) {
      settled = true;
      delete panel.dataset.draft;
      if (notice) notice.hidden = true;
      text.className = "answer-text withdrawn";
      text.textContent = message;
      finish("withdrawn", "No answer was given.");
    }

    fetch(form.dataset.streamUrl, {
      method: "POST",
      body: new FormData(form),
      headers: { "Accept": "text/event-stream" },
      credentials: "same-origin",
      signal: controller.signal
    }).then(function (response) {
      if (!response.ok) throw new Error("The server answered " + response.status + ".");
      var reader = response.body.getReader();
      var decoder = new TextDecoder();
      var buffer = "";
      function pump() {
        return reader.read().then(function (chunk) {
          if (chunk.done) {
            // Ended without the checked answer: whatever was drafted is not one.
            if (!settled && tokens) withdraw("The answer did not complete and was not recorded, so it is not given. Disregard the draft, and ask again.");
            else if (!settled) finish("error", "The answer did not complete. Try again, or reload the page.");
            return;
          }
          buffer = parseEvents(buffer + decoder.decode(chunk.value, { stream: true }), function (name, data) {
            if (name === "passages") {
              status.textContent = data.count ? "Found " + data.count + " passage(s); answering…" : "No passage matches; answering…";
            } else if (name === "draft") {
              panel.dataset.draft = "1";
              if (notice) { notice.textContent = data.notice; notice.hidden = false; }
              status.textContent = "The model is writing a draft…";
            } else if (name === "thinking") {
              thinking();
            } else if (name === "thought") {
              thought(data.seconds);
            } else if (name === "reset") {
              tokens = 0;
              panel.dataset.tokens = "0";
              text.textContent = "";
              thinking();
            } else if (name === "token") {
              tokens += 1;
              panel.dataset.tokens = String(tokens);
              text.textContent += data.text;
            } else if (name === "withdrawn") {
              withdraw(data.message);
            } else if (name === "done") {
              settled = true;
              delete panel.dataset.draft;
              panel.innerHTML = data.html;
              if (data.draft && data.draft.replaced) {
                var replaced = document.createElement("p");
                replaced.className = "draft-replaced";
                replaced.textContent = "The draft shown while the model wrote was replaced by this checked answer: " + data.draft.reason;
                panel.insertBefore(replaced, panel.firstChild);
              }
              panel.dataset.answerUrl = data.url;
              var follows = form.querySelector("input[name=follows]");
              if (follows) follows.value = data.question_id;
              if (window.history && history.replaceState) history.replaceState(null, "", data.url);
              finish("done");
            }
          });
          return pump();
        });
      }
      return pump();
    }).catch(function (error) {
      if (error.name === "AbortError") {
        finish("stopped", "Stopped. The partial answer is kept in your history.");
      } else if (!settled && tokens) {
        withdraw("The connection failed before the answer was checked and recorded, so it is not given. Disregard the draft, and ask again.");
      } else {
        finish("error", "Something went wrong: " + error.message + " Try again, or reload the page.");
      }
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.matches || !form.matches("form.ask[data-stream-url]")) return;
    if (!window.fetch || !window.ReadableStream || !window.AbortController) return;
    if (!document.getElementById("stream")) return;
    event.preventDefault();
    start(form);
  });
})();
