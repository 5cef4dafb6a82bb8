"""``/csat/{id}``: the rating page a survey link opens when no page of the tenant's own is set.

The token stays in the link's fragment (``#token=...``), which browsers never send to
a server: the page is the same static HTML for every survey, and its script reads the
fragment and calls ``PATCH /api/public/csat-surveys/{id}``. So the token never appears
in an access log, a proxy or a Referer. ``CSAT_SURVEY_URL`` points links elsewhere.
"""

from __future__ import annotations

import falcon

from api import ops_html

_SECURITY_HEADERS = {
    "Content-Security-Policy": ops_html.CSP,
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>How did we do?</title>
<style>
body{font:16px/1.5 system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}
.stars button{font-size:1.5rem;padding:.4rem .8rem;margin:.2rem;cursor:pointer}
.stars button[aria-pressed=true]{background:#1a56db;color:#fff}
textarea{width:100%;min-height:6rem}#status{margin-top:1rem;font-weight:600}
</style>
</head>
<body>
<h1>How did we do?</h1>
<p>Rate this conversation from 1 (poor) to 5 (excellent).</p>
<form id="rate">
<div class="stars" role="group" aria-label="Rating">
<button type="button" data-r="1">1</button><button type="button" data-r="2">2</button>
<button type="button" data-r="3">3</button><button type="button" data-r="4">4</button>
<button type="button" data-r="5">5</button>
</div>
<p><label for="comment">Anything to add? (optional)</label><br>
<textarea id="comment" maxlength="2000"></textarea></p>
<button type="submit">Send</button>
</form>
<p id="status" role="status"></p>
<script>
(function () {
  var id = location.pathname.split("/").pop();
  var token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  var rating = 0, form = document.getElementById("rate");
  var status = document.getElementById("status");
  var says = {404: "This link is not valid.", 409: "This conversation was already rated."};
  document.querySelectorAll(".stars button").forEach(function (b) {
    b.addEventListener("click", function () {
      rating = Number(b.dataset.r);
      document.querySelectorAll(".stars button").forEach(function (o) {
        o.setAttribute("aria-pressed", String(o === b));
      });
    });
  });
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (!rating) { status.textContent = "Choose a rating from 1 to 5."; return; }
    var comment = document.getElementById("comment").value.trim();
    fetch("/api/public/csat-surveys/" + encodeURIComponent(id), {
      method: "PATCH", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({token: token, rating: rating, comment: comment || null})
    }).then(function (r) {
      if (r.ok) { form.hidden = true; status.textContent = "Thank you for your feedback!"; }
      else { status.textContent = says[r.status] || "Something went wrong; please try again."; }
    }, function () { status.textContent = "Could not reach us; please try again."; });
  });
})();
</script>
</body>
</html>
"""


class RatingPageResource:
    def on_get(self, req, resp, id):
        resp.content_type = falcon.MEDIA_HTML
        resp.set_headers(_SECURITY_HEADERS)
        resp.text = _PAGE


ROUTES = [("/csat/{id:uuid}", RatingPageResource())]
