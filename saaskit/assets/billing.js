// /billing's script, loaded after Stripe.js and only there. The card's number goes to Stripe
// alone: Stripe.js confirms a SetupIntent the server made (POST /billing/card/setup), and the
// card form then posts only the payment method Stripe made (POST /billing/card). It also lets
// the card holder confirm a top-up their bank wants confirmed (3-D Secure).
(() => {
  "use strict";
  const form = document.getElementById("card-form");
  const confirm = document.getElementById("confirm-payment");
  const keyed = form || confirm;
  if (!keyed || typeof Stripe !== "function") return;
  const stripe = Stripe(keyed.dataset.publishableKey);

  const say = (element, text) => {
    element.textContent = text;
    element.hidden = !text;
  };

  if (form) {
    const card = stripe.elements().create("card");
    card.mount("#card-element");
    form.hidden = false;
    const without = document.getElementById("card-needs-script");
    if (without) without.hidden = true;
    const message = document.getElementById("card-message");
    const button = form.querySelector("button[type=submit]");
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      button.disabled = true;
      say(message, "");
      try {
        const answer = await fetch(form.dataset.setup, {
          method: "POST",
          credentials: "same-origin",
          headers: { "Accept": "application/json" },
          body: new URLSearchParams({ csrf: form.elements.csrf.value }),
        });
        const body = await answer.json().catch(() => ({}));
        if (!answer.ok || !body.client_secret) {
          throw new Error(body.error || "The card could not be saved. Reload the page and try again.");
        }
        const result = await stripe.confirmCardSetup(body.client_secret, {
          payment_method: { card },
        });
        if (result.error) {
          throw new Error(result.error.message || "The card was not accepted.");
        }
        const method = result.setupIntent.payment_method;
        form.elements.payment_method.value = typeof method === "string" ? method : method.id;
        form.submit();
      } catch (error) {
        say(message, error.message);
        button.disabled = false;
      }
    });
  }

  if (confirm) {
    confirm.hidden = false;
    const message = document.getElementById("confirm-message");
    confirm.addEventListener("click", async () => {
      confirm.disabled = true;
      say(message, "");
      const result = await stripe.confirmCardPayment(confirm.dataset.clientSecret);
      if (result.error) {
        say(message, result.error.message || "The payment was not confirmed.");
        confirm.disabled = false;
        return;
      }
      window.location.assign(confirm.dataset.done);
    });
  }
})();
