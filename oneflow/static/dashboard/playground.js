/* The playground: posts the form, reads the gateway's SSE answer as it streams,
   and shows the text, then its cost and tokens. Without this script the form
   still posts and the whole answer comes back as a page. */
(function () {
  "use strict";

  // "0.0000123400" -> "0.00", half-up, on the digits (never through a float: it is money).
  function roundCredits(text) {
    var match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(String(text));
    if (!match) return String(text);
    var fraction = (match[3] || "") + "000";
    var cents = BigInt(match[2] + fraction.slice(0, 2)) + (Number(fraction[2]) >= 5 ? 1n : 0n);
    var digits = cents.toString().padStart(3, "0");
    return match[1] + digits.slice(0, -2) + "." + digits.slice(-2);
  }

  function exact(text) {
    return String(text).indexOf(".") < 0 ? String(text) : String(text).replace(/0+$/, "").replace(/\.$/, "");
  }

  function Playground(form) {
    this.form = form;
    this.send = document.getElementById("playground-send");
    this.stop = document.getElementById("playground-stop");
    this.answer = document.getElementById("playground-answer");
    this.meta = document.getElementById("playground-meta");
    this.error = document.getElementById("playground-error");
    this.controller = null;
    form.addEventListener("submit", this.submit.bind(this));
    this.stop.addEventListener("click", this.abort.bind(this));
  }

  Playground.prototype.body = function () {
    var data = {};
    ["model", "prompt", "system", "max_tokens", "temperature"].forEach(function (name) {
      var field = this.form.elements[name];
      if (field && field.value !== "") data[name] = field.value;
    }, this);
    return JSON.stringify(data);
  };

  Playground.prototype.showError = function (message) {
    this.error.textContent = "";
    var p = document.createElement("p");
    p.textContent = message;
    this.error.appendChild(p);
    this.error.hidden = false;
  };

  Playground.prototype.busy = function (busy) {
    this.send.disabled = busy;
    this.stop.hidden = !busy;
    this.answer.setAttribute("aria-busy", busy ? "true" : "false");
  };

  Playground.prototype.submit = function (event) {
    event.preventDefault();
    if (this.controller) return;
    this.answer.textContent = "";
    this.meta.textContent = "";
    this.error.hidden = true;
    this.controller = new AbortController();
    this.busy(true);
    var self = this;
    fetch(this.form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-CSRFToken": this.form.elements.csrfmiddlewaretoken.value
      },
      body: this.body(),
      signal: this.controller.signal
    }).then(function (response) {
      self.requestId = response.headers.get("x-oneflow-request-id");
      if (response.ok && (response.headers.get("content-type") || "").indexOf("text/event-stream") === 0) {
        return self.read(response.body.getReader());
      }
      return self.failed(response);
    }).catch(function (error) {
      if (error.name === "AbortError") {
        self.meta.textContent = "Stopped: you pay for the prompt and the text written so far.";
      } else {
        self.showError("The answer could not be read: " + error.message);
      }
    }).then(function () {
      self.controller = null;
      self.busy(false);
    });
  };

  Playground.prototype.abort = function () {
    if (this.controller) this.controller.abort();
  };

  Playground.prototype.failed = function (response) {
    var self = this;
    var type = response.headers.get("content-type") || "";
    if (type.indexOf("application/json") !== 0) {
      self.showError(response.status === 403
        ? "The request was refused (" + response.status + "). Reload the page and try again."
        : "The request failed with status " + response.status + ".");
      return null;
    }
    return response.json().then(function (payload) {
      var error = payload && payload.error;
      self.showError((error && error.message) || "The request failed with status " + response.status + ".");
    });
  };

  // Server-sent events: frames end with a blank line; "data: [DONE]" ends the answer.
  Playground.prototype.read = function (reader) {
    var self = this, decoder = new TextDecoder(), buffer = "";
    function pump() {
      return reader.read().then(function (step) {
        buffer += decoder.decode(step.value || new Uint8Array(), { stream: !step.done });
        var frames = buffer.split(/\r?\n\r?\n/);
        buffer = step.done ? "" : frames.pop();
        frames.forEach(self.frame, self);
        if (!step.done) return pump();
      });
    }
    return pump();
  };

  Playground.prototype.frame = function (frame) {
    var data = frame.split(/\r?\n/).filter(function (line) { return line.indexOf("data:") === 0; })
      .map(function (line) { return line.slice(5).replace(/^ /, ""); }).join("\n");
    if (!data || data === "[DONE]") return;
    var chunk;
    try { chunk = JSON.parse(data); } catch (e) { return; }
    if (chunk.error) {
      this.showError("The answer broke off: " + (chunk.error.message || "the provider failed") + ".");
      return;
    }
    (chunk.choices || []).forEach(function (choice) {
      var text = choice.delta && choice.delta.content;
      if (text) this.answer.appendChild(document.createTextNode(text));
    }, this);
    if (chunk.usage) this.showUsage(chunk.usage);
  };

  Playground.prototype.showUsage = function (usage) {
    this.meta.textContent = "";
    if (usage.cost !== undefined && usage.cost !== null) {
      var strong = document.createElement("strong");
      strong.textContent = roundCredits(usage.cost) + " credits";
      strong.id = "playground-cost";
      strong.dataset.cost = usage.cost;
      this.meta.append("Cost: ", strong, " (" + exact(usage.cost) + " exactly) · ");
    }
    this.meta.append((usage.prompt_tokens || 0) + " prompt + " + (usage.completion_tokens || 0) + " completion tokens");
    if (this.requestId) {
      var link = document.createElement("a");
      link.href = this.form.dataset.requestUrl.replace("REQUEST_ID", encodeURIComponent(this.requestId));
      link.textContent = "Request " + this.requestId;
      this.meta.append(" · ", link);
    }
  };

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("playground-form");
    if (form && window.fetch && window.ReadableStream && window.TextDecoder && window.AbortController) {
      new Playground(form);
    }
  });
})();
