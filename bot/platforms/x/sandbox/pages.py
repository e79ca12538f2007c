"""HTML of the sandbox: the OAuth consent page, its error page and the control page.

Kept as Python strings (Jinja templates, autoescaped by Flask's render_template_string)
so the sandbox ships as plain modules. Plain forms only, no JavaScript: a browser test
or a human at `tipjar demo --serve` drives them with clicks.
"""

from __future__ import annotations

_STYLE = """
<style>
  body { font-family: system-ui, sans-serif; margin: 0; background: #f5f8fa; color: #0f1419; }
  main { max-width: 44rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem;
         border-radius: 16px; box-shadow: 0 1px 4px rgba(0,0,0,.12); }
  .banner { background: #fff4d6; padding: .5rem .75rem; border-radius: 8px; font-size: .9rem; }
  .error { background: #fde8ea; color: #8b0015; padding: .5rem .75rem; border-radius: 8px; }
  fieldset { border: 1px solid #cfd9de; border-radius: 8px; margin: 1rem 0; }
  label { display: block; padding: .35rem 0; }
  .handle { color: #536471; }
  button { font-size: 1rem; padding: .55rem 1.3rem; border-radius: 999px; border: 0;
           margin-right: .5rem; cursor: pointer; }
  button.primary { background: #0f1419; color: #fff; }
  button.secondary { background: #eff3f4; color: #0f1419; }
  table { border-collapse: collapse; width: 100%; font-size: .9rem; }
  td, th { text-align: left; padding: .25rem .4rem; border-bottom: 1px solid #eff3f4;
           vertical-align: top; }
  code { font-size: .85rem; }
  textarea, input[type=text] { width: 100%; box-sizing: border-box; font-size: 1rem; }
</style>
"""

CONSENT_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Authorize {{ app_name }} | X sandbox</title>
"""
    + _STYLE
    + """
</head>
<body>
<main>
<p class="banner">X sandbox: a local stand-in for X. Nothing here leaves this machine.</p>
<h1>Authorize {{ app_name }} to use your account?</h1>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="{{ action }}">
  {% for name, value in params %}
  <input type="hidden" name="{{ name }}" value="{{ value }}">
  {% endfor %}
  {% if users %}
  <fieldset>
    <legend>{% if users|length == 1 %}Signed in as{% else %}Choose an account{% endif %}</legend>
    {% for user in users %}
    <label><input type="radio" name="user_id" value="{{ user.id }}" required
      {% if users|length == 1 %}checked{% endif %}>
      {{ user.name }} <span class="handle">@{{ user.username }}</span></label>
    {% endfor %}
  </fieldset>
  {% else %}
  <p class="error">There are no accounts in this sandbox yet.</p>
  {% endif %}
  <p>{{ app_name }} will be able to:</p>
  <ul>{% for line in scopes %}<li>{{ line }}</li>{% endfor %}</ul>
  <button class="primary" type="submit" name="decision" value="authorize">Authorize app</button>
  <button class="secondary" type="submit" name="decision" value="cancel"
    formnovalidate>Cancel</button>
</form>
</main>
</body>
</html>
"""
)

ERROR_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Something went wrong | X sandbox</title>
"""
    + _STYLE
    + """
</head>
<body>
<main>
<p class="banner">X sandbox: a local stand-in for X.</p>
<h1>Something went wrong</h1>
<p class="error" role="alert">{{ message }}</p>
<p>The application that sent you here made a request this page cannot accept.</p>
</main>
</body>
</html>
"""
)

CONTROL_PAGE = (
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>X sandbox</title>
"""
    + _STYLE
    + """
</head>
<body>
<main>
<h1>X sandbox</h1>
<p class="banner">A local stand-in for the X API. The bot is
  <strong>@{{ bot.username }}</strong> (id <code>{{ bot.id }}</code>).</p>
{% if error %}<p class="error" role="alert">{{ error }}</p>{% endif %}

<h2>Tweet</h2>
<form method="post" action="{{ url_for('control_tweet') }}">
  <label>As <select name="author">
    {% for user in users %}<option value="{{ user.username }}">@{{ user.username }}</option>
    {% endfor %}
  </select></label>
  <label>Text <textarea name="text" rows="2" required>@{{ bot.username }} </textarea></label>
  <label>In reply to tweet id (optional) <input type="text" name="in_reply_to"></label>
  <button class="primary" type="submit">Tweet</button>
</form>

<h2>Accounts</h2>
<table>
  <tr><th>Name</th><th>Handle</th><th>Id</th></tr>
  {% for user in users %}
  <tr><td>{{ user.name }}</td><td>@{{ user.username }}</td><td><code>{{ user.id }}</code></td></tr>
  {% endfor %}
</table>
<form method="post" action="{{ url_for('control_add_user') }}">
  <label>New handle <input type="text" name="username" required pattern="[A-Za-z0-9_]{1,15}">
  </label>
  <button class="secondary" type="submit">Add account</button>
</form>

<h2>Timeline (newest first)</h2>
<table>
  <tr><th>Id</th><th>Author</th><th>Text</th><th>Reply to</th></tr>
  {% for tweet in tweets %}
  <tr><td><code>{{ tweet.id }}</code>{% if tweet.via_api %} (API){% endif %}</td>
    <td>@{{ tweet.author.username }}</td><td>{{ tweet.text }}</td>
    <td>{% if tweet.in_reply_to %}<code>{{ tweet.in_reply_to }}</code>{% endif %}</td></tr>
  {% endfor %}
</table>

<h2>Direct messages</h2>
<table>
  <tr><th>From</th><th>To</th><th>Text</th></tr>
  {% for dm in dms %}
  <tr><td>@{{ dm.sender.username }}</td><td>@{{ dm.recipient.username }}</td>
    <td>{{ dm.text }}</td></tr>
  {% endfor %}
</table>
</main>
</body>
</html>
"""
)
