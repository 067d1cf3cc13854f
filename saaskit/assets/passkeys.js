// Passkeys, on the passkeys page (adding one) and on /login (signing in with one). Only a
// page's script can ask the browser's authenticator, so each ceremony is two posts from here:
// `start` answers the options for navigator.credentials, `finish` takes the authenticator's
// answer. Both are forms to the server: they carry the page's CSRF code, as any form does.
(() => {
  "use strict";
  const adding = document.getElementById("passkey-add");
  const signing = document.getElementById("passkey-sign-in");
  const form = adding || signing;
  if (!form) return;
  const message = document.getElementById("passkey-message");
  const say = (text) => { message.textContent = text; };

  const supported = typeof PublicKeyCredential === "function"
    && typeof PublicKeyCredential.parseCreationOptionsFromJSON === "function"
    && typeof PublicKeyCredential.parseRequestOptionsFromJSON === "function"
    && window.isSecureContext;
  const without = document.getElementById("passkey-needs-script");
  if (without) without.hidden = true;
  form.hidden = false;
  const button = form.querySelector("button");
  if (!supported) {
    button.disabled = true;
    say("This browser cannot use passkeys.");
    return;
  }

  // The server leaves out nothing but may say `null` for an option it does not set; the
  // browser's parser wants such a member absent.
  const pruned = (value) => {
    if (Array.isArray(value)) return value.map(pruned);
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value)
        .filter(([, v]) => v !== null)
        .map(([k, v]) => [k, pruned(v)]));
    }
    return value;
  };

  const post = async (url, fields) => {
    const answer = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Accept": "application/json" },
      body: new URLSearchParams({ csrf: form.elements.csrf.value, ...fields }),
    });
    const body = await answer.json().catch(() => ({}));
    if (!answer.ok) {
      throw new Error(body.error || "The request was not accepted. Reload the page and try again.");
    }
    return body;
  };

  // What the browser says when the person closes its dialog, or it finds no passkey.
  const worded = (error) => {
    if (error && error.name === "NotAllowedError") {
      return "No passkey was used: the request was cancelled or timed out.";
    }
    if (error && error.name === "InvalidStateError") {
      return "This device already holds a passkey for your account.";
    }
    return (error && error.message) || "The passkey could not be used.";
  };

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    button.disabled = true;
    say("");
    try {
      if (adding) {
        const started = await post(adding.dataset.start, {});
        const publicKey = PublicKeyCredential.parseCreationOptionsFromJSON(
          pruned(started.options.publicKey));
        const credential = await navigator.credentials.create({ publicKey });
        const done = await post(adding.dataset.finish, {
          ceremony: started.ceremony,
          credential: JSON.stringify(credential.toJSON()),
          name: adding.elements.name.value,
        });
        window.location.assign(done.redirect);
      } else {
        const started = await post(signing.dataset.start, {});
        const publicKey = PublicKeyCredential.parseRequestOptionsFromJSON(
          pruned(started.options.publicKey));
        const credential = await navigator.credentials.get({ publicKey });
        const done = await post(signing.dataset.finish, {
          ceremony: started.ceremony,
          credential: JSON.stringify(credential.toJSON()),
          next: signing.elements.next.value,
        });
        window.location.assign(done.redirect);
      }
    } catch (error) {
      say(worded(error));
      button.disabled = false;
    }
  });
})();
