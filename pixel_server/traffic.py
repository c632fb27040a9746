"""Traffic classes: who fetched a pixel or followed a link, with the evidence (issue 9).

Pure and per request: :func:`classify` takes what one request shows — its method, user agent,
``Purpose``/``Sec-Purpose`` header, the client's full address (before it is anonymised), what
was fetched (an open, a view, a click, an event) and, for a wrapped email, the seconds since
it was sent — and answers a :class:`Verdict`: one of :data:`CLASSES`, the reasons that decided
it, and :data:`RULES_VERSION`, so that a stored class can be told from one a later rule set
would give. What needs history (a burst of clicks on one message, a trap link's click marking
the others) is decided where the hits of a message are seen together: bursts.py.

The rules and what each is based on are in docs/traffic.md; its sources are the issue threads
and parser fixtures collected in the project's research notes. Generic crawlers come from
crawlerdetect (the Python port of Crawler-Detect's list), after our own rules: it calls
Gmail's and Yahoo's image proxies, Outlook and HTTP libraries crawlers, and they are not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from crawlerdetect import CrawlerDetect

from .networks import Networks, shipped

RULES_VERSION = "2"
CLASSES = (
    "human",
    "apple_mpp",  # Apple Mail Privacy Protection: every delivered message, read or not
    "mail_proxy",  # a real open through a webmail image proxy: counted, device unknown
    "prefetch",  # a machine fetch of an image before anyone looked (Gmail prefetch, ...)
    "link_scanner",  # a mail gateway following every link at delivery
    "preview_bot",  # a chat or social app making a preview of a shared link
    "crawler",  # search, SEO, AI, archive bots; headless browsers
    "probe",  # HEAD, uptime monitors, HTTP libraries
    "unknown",  # no user agent, or one no browser or client sends
)
MACHINE = frozenset(CLASSES) - {"human", "mail_proxy"}  # not counted as people
UNKNOWN_DEVICE = "unknown"  # the device of a mail_proxy open: the proxy hides the reader's
OPEN_KINDS = frozenset(("open", "view"))  # an image fetched (a click or an event otherwise)
# a click this soon after its message was sent is a gateway's: a person cannot receive, open
# and click in it (Mautic's BotRatioHelper uses the same 2 s, mautic#16263)
SCANNER_SECONDS = 2.0
# Apple's and Outlook's image fetchers send the same stripped WebKit user agent; only a fetch
# this soon after the send is taken for MPP's download at delivery (warmbly#569 saw a person's
# Outlook open 24 minutes after the send)
MPP_SECONDS = 120.0
# a click this soon after the send from a crawler, headless browser or HTTP library is a mail
# gateway's scan, not a person's script: Safe Links with a headless Chrome 22 s after the send
# (emdash#3298), "Python Requests" clicking every link (craft-campaign#546), scanners 60 s to
# 5 min after the send (django-anymail#200)
SCRIPTED_SCAN_SECONDS = 300.0
SCRIPTED = frozenset(("crawler", "probe"))  # the classes a scripted_scan click comes from
# known networks (Exchange Online Protection, Googlebot, ...) are lists of data files:
# networks.py, docs/traffic.md "Known networks"


@dataclass(frozen=True, slots=True)
class Verdict:
    """A request's class, the reasons for it (``rule:detail``, most telling first) and the
    version of the rules that gave it."""

    cls: str
    reasons: tuple[str, ...]
    version: str = RULES_VERSION


def _rules(*pairs: tuple[str, str]) -> list[tuple[str, re.Pattern[str]]]:
    return [(reason, re.compile(pattern, re.IGNORECASE)) for reason, pattern in pairs]


# (class, [(reason, pattern)]), first match wins; searched in the user agent, before the
# crawler list
UA_RULES: list[tuple[str, list[tuple[str, re.Pattern[str]]]]] = [
    (
        "mail_proxy",
        _rules(
            ("gmail_image_proxy", r"GoogleImageProxy"),
            ("yahoo_mail_proxy", r"YahooMailProxy"),
        ),
    ),
    (
        "prefetch",  # an image fetch; the same agents following a link are scanners (below)
        _rules(
            ("gmail_prefetch", r"Edge/12\.246 Mozilla/5\.0$"),
            ("gmail_content_sampling", r"Gmail-content-sampling"),
        ),
    ),
    (
        "link_scanner",
        _rules(
            ("gateway", r"safelinks|urldefense|barracuda|mimecast|proofpoint|ironport"),
            ("kaspersky_link_resolver", r"Kaspersky Lab CFR link resolver"),
            ("bing_preview", r"BingPreview"),
        ),
    ),
    (
        "preview_bot",
        _rules(
            ("slack", r"Slackbot|Slack-ImgProxy"),
            ("discord", r"Discordbot"),
            # Discord's image proxy: an old Firefox no one runs, on purpose (discord-api-docs#1600)
            (
                "discord_image_proxy",
                r"^Mozilla/5\.0 \(Macintosh; Intel Mac OS X 10\.10; rv:38\.0\)"
                r" Gecko/20100101 Firefox/38\.0$",
            ),
            ("imessage_or_facebook", r"facebookexternalhit|Facebot|meta-externalagent"),
            ("twitter", r"Twitterbot"),
            ("whatsapp", r"WhatsApp/"),
            ("telegram", r"TelegramBot"),
            ("linkedin", r"LinkedInBot"),
            ("teams_skype", r"SkypeUriPreview|MicrosoftPreview"),
            ("signal", r"^Signal/|Signal-Android/"),
            (
                "unfurler",
                r"Iframely|Embedly|redditbot|Pinterest(bot)?/|Mastodon/|vkShare|Snap URL Preview"
                r"|Viber/|Line/|KakaoTalk-?Scrap|Zoom Preview|Google-PageRenderer",
            ),
        ),
    ),
    (
        "probe",
        _rules(
            (
                "uptime_monitor",
                r"Uptime-Kuma|UptimeRobot|Pingdom|StatusCake|Site24x7|Better Uptime"
                r"|check_http|Datadog|NewRelicPinger|Checkly|OneUptime",
            ),
            (
                "http_library",
                r"^(curl|Wget|python-requests|Python-urllib|python-httpx|aiohttp|Python/"
                r"|urllib3|httplib2|Scrapy|Go-http-client|Go |okhttp|Java/|Java-http-client"
                r"|Apache-HttpClient|Apache-HttpAsyncClient|Jakarta Commons-HttpClient|axios"
                r"|node-fetch|node/|undici|got |superagent|GuzzleHttp|Symfony HttpClient|PHP/"
                r"|WordPress/|Ruby|Faraday|rest-client|http\.rb|HTTPie|libwww-perl|LWP::"
                r"|PostmanRuntime|insomnia|Deno/|Bun/|reqwest|hyper/|Dart/|RestSharp"
                r"|WinHttp|Microsoft-CryptoAPI|lua-resty-http|hackney|Mint/|Req/|Typhoeus"
                r"|libcurl|Wget/|fasthttp|colly|Mechanize|aria2)",
            ),
            # link checkers (a site's own broken-link tools) on Perl's library and W3C's
            ("link_checker", r"LinkCh(ec)?ke?r|W3C-checklink|libwww-perl/"),
        ),
    ),
    ("crawler", _rules(("headless_browser", r"HeadlessChrome|PhantomJS|Puppeteer|Playwright"))),
    (
        "human",  # mail clients crawlerdetect would call crawlers
        _rules(
            (
                "mail_client",
                r"Microsoft (Office )?Outlook|ms-office|MSOffice|Thunderbird/|^Airmail "
                r"|eM Client|Mailbird|Foxmail|Postbox/",
            )
        ),
    ),
]
# after the crawler list: "Mozilla/5.0 (compatible; bingbot/2.0; ...)" is a crawler, not these
UNKNOWN_RULES = _rules(
    ("android_http_stack", r"^Dalvik/"),
    # a browser's opening with nothing after it: scripted (microlink traffic)
    ("truncated_browser", r"^Mozilla/5\.0 \([^)]*\)$"),
)
BARE_MOZILLA = "Mozilla/5.0"  # what MPP sends (uap-core#509)
# Apple Mail's own fetch, and MPP's and Outlook's, on a Mac: AppleWebKit without Version/ or
# Safari/ (uap-core#528); iOS Mail's the same with "Mobile/<build>" (its WKWebView's agent)
STRIPPED_WEBKIT = re.compile(
    r"^Mozilla/5\.0 \((Macintosh|iPhone|iPad)[^)]*\) AppleWebKit/[\d.]+ \(KHTML, like Gecko\)"
    r"( Mobile/\w+)?$"
)
_CRAWLERS = CrawlerDetect()


@lru_cache(maxsize=4096)
def ua_class(ua: str) -> tuple[str, str] | None:
    """(class, reason) from the user agent alone, or None: nothing marks it (a browser or an
    app). Cached: a user agent is seen again and again, and crawlerdetect's list is long."""
    for cls, rules in UA_RULES:
        for reason, pattern in rules:
            if pattern.search(ua):
                return cls, f"ua:{reason}"
    if _CRAWLERS.isCrawler(ua):
        return "crawler", f"ua:crawler_list:{(_CRAWLERS.getMatches() or '?')[:40]}"
    for reason, pattern in UNKNOWN_RULES:
        if pattern.search(ua):
            return "unknown", f"ua:{reason}"
    return None


def classify(
    *,
    method: str,
    ua: str | None,
    kind: str,
    ip: str | None = None,
    purpose: str | None = None,
    since_send_s: float | None = None,
    vouched: bool = False,
    networks: Networks | None = None,
) -> Verdict:
    """The class of one request: ``kind`` is the hit's (open, view, click, event); ``ip`` the
    client's full address (never stored); ``purpose`` the Purpose or Sec-Purpose header;
    ``since_send_s`` the seconds since a wrapped email was sent (None: not known);
    ``vouched``: a server call (an ingest key), whose missing user agent is no evidence (its
    own agent is the back end's, and is not looked at); ``networks`` the known networks
    (PIXEL_NETWORKS over the shipped lists; None: the shipped lists)."""
    image = kind in OPEN_KINDS
    if method == "HEAD":
        return Verdict("probe", ("method:HEAD",))
    if purpose is not None and re.search(r"prefetch|preview", purpose, re.IGNORECASE):
        return Verdict("prefetch" if image else "link_scanner", ("header:purpose",))
    if ip is not None:
        known = (shipped() if networks is None else networks).lookup(ip, kind)
        if known is not None:
            return Verdict(known.cls, (known.label,))
    if not ua:
        return SERVER_CALL if vouched else Verdict("unknown", ("ua:missing",))
    timing = () if since_send_s is None else (f"since_send:{since_send_s:.0f}s",)
    if ua == BARE_MOZILLA:
        return Verdict("apple_mpp" if image else "unknown", ("ua:bare_mozilla",))
    early = image and since_send_s is not None and since_send_s < MPP_SECONDS
    if early and STRIPPED_WEBKIT.match(ua) is not None:
        return Verdict("apple_mpp", ("ua:stripped_webkit", *timing))
    marked = ua_class(ua)
    if marked is not None:
        cls, reason = marked
        if cls == "prefetch" and not image:
            cls = "link_scanner"  # Gmail following a link, not fetching an image
        elif (
            cls in SCRIPTED
            and kind == "click"
            and since_send_s is not None
            and since_send_s < SCRIPTED_SCAN_SECONDS
        ):
            return Verdict("link_scanner", ("scripted_scan", reason, *timing))
        return Verdict(cls, (reason,))
    if not image and since_send_s is not None and since_send_s < SCANNER_SECONDS:
        return Verdict("link_scanner", timing)
    return HUMAN


HUMAN = Verdict("human", ())  # the common answer, made once
SERVER_CALL = Verdict("human", ("server_call",))  # a back end's event without a client agent
