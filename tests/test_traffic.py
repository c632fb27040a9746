"""Traffic classes (traffic.py) on a corpus of user agents and request shapes from public
reports: each row names where the string was seen. The classes issue 9 found wrong before:
Gmail's proxy a human on "Windows XP", Yahoo's proxy a bot, curl / python-requests /
HeadlessChrome humans, HEAD requests counted."""

from __future__ import annotations

import pytest

from pixel_server.traffic import CLASSES, MACHINE, RULES_VERSION, Verdict, classify, ua_class

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
    " Chrome/120.0.0.0 Safari/537.36"
)
IPHONE_SAFARI = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15"
    " (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
)
STRIPPED_WEBKIT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_6) AppleWebKit/605.1.15 (KHTML, like Gecko)"
)

# (user agent, class of an open, class of a click, source)
CORPUS = [
    (CHROME, "human", "human", "a current desktop browser"),
    (IPHONE_SAFARI, "human", "human", "a current phone browser"),
    (
        "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
        "mail_proxy",
        "mail_proxy",
        "browscap#1108, mautic#16069",
    ),
    (
        "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
        "mail_proxy",
        "mail_proxy",
        "ua-parser-js#494",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0",
        "prefetch",
        "link_scanner",
        "GMass, Bird/SparkPost, mautic#10245",
    ),
    (
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Gmail-content-sampling",
        "prefetch",
        "link_scanner",
        "mssola/user_agent#71",
    ),
    ("Mozilla/5.0", "apple_mpp", "unknown", "uap-core#509"),
    ("Barracuda Sentinel (EE)", "link_scanner", "link_scanner", "device-detector"),
    ("Kaspersky Lab CFR link resolver", "link_scanner", "link_scanner", "device-detector"),
    ("Mozilla/5.0 (compatible; BingPreview/1.0b)", "link_scanner", "link_scanner", "phpList#415"),
    (
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "preview_bot",
        "preview_bot",
        "Slack's robots page",
    ),
    (
        "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
        "preview_bot",
        "preview_bot",
        "discord-api-docs#1600",
    ),
    (
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko)"
        " Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0",
        "preview_bot",
        "preview_bot",
        "hachyderm#212 (iMessage)",
    ),
    ("WhatsApp/2.23.20.0", "preview_bot", "preview_bot", "flutter_link_previewer#43"),
    ("SkypeUriPreview Preview/0.5", "preview_bot", "preview_bot", "Teams/Skype previews"),
    ("meta-externalagent/1.1", "preview_bot", "preview_bot", "KBVE/kbve#11210"),
    ("curl/8.4.0", "probe", "probe", "an HTTP library"),
    ("python-requests/2.31.0", "probe", "probe", "craft-campaign#546"),
    ("Go-http-client/1.1", "probe", "probe", "an HTTP library"),
    ("okhttp/4.12.0", "probe", "probe", "an HTTP library"),
    ("Uptime-Kuma/1.23.0", "probe", "probe", "uptime-kuma#2331"),
    (
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"
        " HeadlessChrome/120.0.0.0 Safari/537.36",
        "crawler",
        "crawler",
        "emdash#3298",
    ),
    (
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "crawler",
        "crawler",
        "sandstorm#3638",
    ),
    (
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
        "crawler",
        "crawler",
        "a search engine",
    ),
    (
        "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.4266; Pro)",
        "human",
        "human",
        "gophish#1920: Outlook desktop loads images itself (Crawler-Detect#430 calls it a bot)",
    ),
    ("Dalvik/2.1.0 (Linux; U; Android 13; Pixel 7 Build/TQ3A)", "unknown", "unknown", "research"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64)", "unknown", "unknown", "microlink traffic"),
]


@pytest.mark.parametrize(("ua", "opened", "clicked", "source"), CORPUS, ids=[r[3] for r in CORPUS])
def test_corpus(ua: str, opened: str, clicked: str, source: str) -> None:
    assert classify(method="GET", ua=ua, kind="open").cls == opened, source
    assert classify(method="GET", ua=ua, kind="click").cls == clicked, source


def test_every_verdict_names_its_class_rules_and_version() -> None:
    for ua, *_ in CORPUS:
        for kind in ("open", "view", "click", "event"):
            verdict = classify(method="GET", ua=ua, kind=kind)
            assert verdict.cls in CLASSES
            assert verdict.version == RULES_VERSION
            # a machine class always says why (a human may: a mail client, say)
            assert verdict.reasons or verdict.cls == "human", (ua, verdict)


def test_head_is_a_probe_whatever_the_agent() -> None:
    for ua in (CHROME, IPHONE_SAFARI, None):
        verdict = classify(method="HEAD", ua=ua, kind="click")
        assert verdict == Verdict("probe", ("method:HEAD",))


def test_purpose_header_marks_a_prefetch() -> None:
    assert classify(method="GET", ua=CHROME, kind="open", purpose="prefetch").cls == "prefetch"
    verdict = classify(method="GET", ua=CHROME, kind="click", purpose="prefetch;prerender")
    assert verdict == Verdict("link_scanner", ("header:purpose",))


def test_no_user_agent_is_unknown() -> None:
    for ua in (None, ""):
        assert classify(method="GET", ua=ua, kind="open") == Verdict("unknown", ("ua:missing",))


def test_exchange_online_protection_addresses_are_scanners() -> None:
    """Addresses of Safe Links scans from gophish#973, opencollective#3656, gophish#2646 and
    mautic#9400; a browser's agent does not change it, another address does."""
    published = Verdict("link_scanner", ("ip:exchange_online_protection",))
    assert classify(method="GET", ua=CHROME, kind="click", ip="40.107.218.12") == published
    for ip in ("40.94.16.7", "40.94.89.21", "40.94.29.84"):
        verdict = classify(method="GET", ua=CHROME, kind="click", ip=ip)
        assert verdict == Verdict("link_scanner", ("ip:microsoft_safe_links",)), ip
    assert classify(method="GET", ua=CHROME, kind="click", ip="203.0.113.9").cls == "human"
    assert classify(method="GET", ua=CHROME, kind="click", ip="not an address").cls == "human"


def test_a_click_within_two_seconds_of_the_send_is_a_scanner() -> None:
    verdict = classify(method="GET", ua=CHROME, kind="click", since_send_s=1.2)
    assert verdict == Verdict("link_scanner", ("since_send:1s",))
    assert classify(method="GET", ua=CHROME, kind="click", since_send_s=40).cls == "human"
    # an image fetched that soon is not judged by time alone (Gmail opens 4 s after send:
    # gophish#3086)
    assert classify(method="GET", ua=CHROME, kind="open", since_send_s=1.2).cls == "human"


def test_stripped_webkit_is_mpp_only_at_delivery() -> None:
    """Apple's and Outlook's image fetchers share the stripped WebKit agent (warmbly#569): MPP
    only within the delivery window; later, or with no send time, a person's mail client."""
    early = classify(method="GET", ua=STRIPPED_WEBKIT, kind="open", since_send_s=30)
    assert early == Verdict("apple_mpp", ("ua:stripped_webkit", "since_send:30s"))
    late = classify(method="GET", ua=STRIPPED_WEBKIT, kind="open", since_send_s=24 * 60)
    assert late.cls == "human"
    assert classify(method="GET", ua=STRIPPED_WEBKIT, kind="open").cls == "human"


def test_machine_classes_are_all_but_people_and_proxied_opens() -> None:
    assert set(CLASSES) - MACHINE == {"human", "mail_proxy"}


def test_user_agent_rules_are_cached() -> None:
    ua_class.cache_clear()
    classify(method="GET", ua=CHROME, kind="open")
    classify(method="GET", ua=CHROME, kind="click")
    assert ua_class.cache_info().hits == 1
