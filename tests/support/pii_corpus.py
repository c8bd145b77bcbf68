"""A generated, labelled corpus of personal data and secrets in five languages, for measuring redaction.

Postal addresses are those of the formats the ADDRESS detector claims (United States, Canada, United Kingdom),
set into every language's sentences; :data:`NATIONAL_ADDRESSES` holds addresses in the languages' own national
formats, which it does not claim, so that what it misses is measured and stated rather than left out.

Every value is made valid the way real ones are (check digits computed with python-stdnum, phone numbers that
libphonenumber accepts), set into sentences of English, Chinese, Arabic, Hindi and French, beside
*distractors* that look alike but are not personal data (order numbers, dates, times, version strings,
git hashes, numbers with a wrong check digit). Deterministic for a seed, so the figures in
docs/sovereignty.md can be regenerated (`python scripts/redaction_accuracy.py --write`).
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass

import phonenumbers
from stdnum import iban, luhn, verhoeff
from stdnum.cn import ric

LANGUAGES = ("en", "zh", "ar", "hi", "fr")

# One sentence frame per language and kind: {v} is the value.
FRAMES: dict[str, dict[str, str]] = {
    "en": {"EMAIL": "Please write to {v} before Friday.", "PHONE": "You can call me on {v} after six.",
           "CARD": "My card number is {v}, expiring next year.", "IBAN": "Transfer the fee to {v} today.",
           "CN_RESIDENT_ID": "His resident ID reads {v} on the form.", "AADHAAR": "Her Aadhaar is {v}.",
           "US_SSN": "The SSN on file is {v}.", "IP_ADDRESS": "The server at {v} stopped answering.",
           "API_KEY": "Use the key {v} for the staging account.", "SECRET": "The session token was {v} yesterday.",
           "ADDRESS": "Please send the parcel to {v} before Friday."},
    "zh": {"EMAIL": "请在周五前发邮件到{v}。", "PHONE": "下午六点后打我的电话{v}。",
           "CARD": "我的银行卡号是{v}，明年到期。", "IBAN": "请把费用转到{v}。",
           "CN_RESIDENT_ID": "他的身份证号码是{v}。", "AADHAAR": "她的Aadhaar号码是{v}。",
           "US_SSN": "档案里的社会安全号是{v}。", "IP_ADDRESS": "地址为{v}的服务器没有响应。",
           "API_KEY": "测试账号请用密钥{v}。", "SECRET": "昨天的会话令牌是{v}。",
           "ADDRESS": "请把包裹寄到{v}，周五前。"},
    "ar": {"EMAIL": "يرجى مراسلتي على {v} قبل الجمعة.", "PHONE": "يمكنك الاتصال بي على {v} بعد السادسة.",
           "CARD": "رقم بطاقتي هو {v} وتنتهي العام المقبل.", "IBAN": "حوّل الرسوم إلى {v} اليوم.",
           "CN_RESIDENT_ID": "رقم هويته الصينية {v} في الاستمارة.", "AADHAAR": "رقم آدهار الخاص بها {v}.",
           "US_SSN": "رقم الضمان الاجتماعي المسجل {v}.", "IP_ADDRESS": "الخادم على العنوان {v} توقف عن الرد.",
           "API_KEY": "استخدم المفتاح {v} لحساب الاختبار.", "SECRET": "كان رمز الجلسة {v} أمس.",
           "ADDRESS": "أرسل الطرد إلى {v} قبل الجمعة."},
    "hi": {"EMAIL": "कृपया शुक्रवार से पहले {v} पर लिखें।", "PHONE": "छह बजे के बाद मुझे {v} पर फ़ोन करें।",
           "CARD": "मेरा कार्ड नंबर {v} है।", "IBAN": "शुल्क {v} में आज ही भेजें।",
           "CN_RESIDENT_ID": "उसकी चीनी पहचान संख्या {v} है।", "AADHAAR": "उसका आधार नंबर {v} है।",
           "US_SSN": "फ़ाइल में SSN {v} है।", "IP_ADDRESS": "{v} वाला सर्वर जवाब नहीं दे रहा।",
           "API_KEY": "स्टेजिंग खाते के लिए कुंजी {v} इस्तेमाल करें।", "SECRET": "कल सत्र टोकन {v} था।",
           "ADDRESS": "कृपया पार्सल {v} पर भेजें।"},
    "fr": {"EMAIL": "Écrivez-moi à {v} avant vendredi.", "PHONE": "Vous pouvez m'appeler au {v} après 18 h.",
           "CARD": "Mon numéro de carte est {v}, il expire l'an prochain.",
           "IBAN": "Virez les frais sur {v} aujourd'hui.",
           "CN_RESIDENT_ID": "Son numéro d'identité chinois est {v}.", "AADHAAR": "Son numéro Aadhaar est {v}.",
           "US_SSN": "Le SSN au dossier est {v}.", "IP_ADDRESS": "Le serveur {v} ne répond plus.",
           "API_KEY": "Utilisez la clé {v} pour le compte de test.", "SECRET": "Le jeton de session était {v} hier.",
           "ADDRESS": "Envoyez le colis au {v} avant vendredi."},
}
# Some numbers are typed in the language's own digits (Arabic-Indic, Devanagari).
NATIVE_DIGITS = {"ar": str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"), "hi": str.maketrans("0123456789", "०१२३४५६७८९")}
DISTRACTOR_FRAMES = {
    "en": "Order {v} shipped.", "zh": "订单{v}已发货。", "ar": "تم شحن الطلب {v}.", "hi": "ऑर्डर {v} भेज दिया गया।",
    "fr": "La commande {v} est partie.",
}


@dataclass(frozen=True)
class LabelledText:
    language: str
    text: str
    spans: tuple[tuple[str, int, int], ...]
    """(kind, start, end) of every real value; distractors carry none."""


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def _card(rng: random.Random) -> str:
    prefix = rng.choice(["4", "51", "52", "37", "6011"])
    length = 15 if prefix == "37" else 16
    body = prefix + _digits(rng, length - len(prefix) - 1)
    number = body + luhn.calc_check_digit(body)
    if length == 16 and rng.random() < 0.5:
        return rng.choice([" ", "-"]).join(number[i : i + 4] for i in range(0, 16, 4))
    return number


def _iban(rng: random.Random) -> str:
    country, bban = rng.choice([
        ("DE", lambda: _digits(rng, 18)), ("FR", lambda: _digits(rng, 10) + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(11)) + _digits(rng, 2)),  # noqa: E501
        ("GB", lambda: "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 14)),
        ("NL", lambda: "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + _digits(rng, 10)),
        ("ES", lambda: _digits(rng, 20)),
    ])
    body = bban()
    number = country + iban.calc_check_digits(country + "00" + body) + body
    if not iban.is_valid(number):  # a national check digit inside the BBAN failed: try again
        return _iban(rng)
    return " ".join(number[i : i + 4] for i in range(0, len(number), 4)) if rng.random() < 0.5 else number


def _cn_ric(rng: random.Random) -> str:
    area = rng.choice(["110105", "310104", "440305", "510107", "330106"])
    birth = f"{rng.randint(1950, 2005)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}"
    body = area + birth + _digits(rng, 3)
    return body + ric.calc_check_digit(body + "0")  # the function reads the first 17 of 18 characters


def _aadhaar(rng: random.Random) -> str:
    while True:
        body = rng.choice("23456789") + _digits(rng, 10)
        number = body + verhoeff.calc_check_digit(body)
        if number != number[::-1]:  # Aadhaar numbers are never palindromes
            break
    return f"{number[:4]} {number[4:8]} {number[8:]}" if rng.random() < 0.5 else number


def _ssn(rng: random.Random) -> str:
    area = rng.choice([n for n in range(1, 900) if n != 666])
    return f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"


def _phone(rng: random.Random) -> str:
    region = rng.choice(["GB", "US", "FR", "DE", "CN", "IN", "AE", "EG", "KE", "BR", "JP"])
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    national = str(example.national_number)
    while True:
        candidate = national[:3] + _digits(rng, len(national) - 3)
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            style = rng.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.E164])
            return phonenumbers.format_number(number, style)


def _email(rng: random.Random) -> str:
    user = rng.choice(["anna", "li.wei", "omar_h", "priya", "jean-luc", "k.mwangi"]) + str(rng.randint(1, 999))
    address = f"{user}@{rng.choice(['example.org', 'mail.gov.example', 'school.example.ke', 'uni-example.fr'])}"
    return address.upper() if rng.random() < 0.15 else address


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.6:
        return ".".join(str(rng.randint(1, 254)) for _ in range(4))
    groups = [f"{rng.randint(0, 0xFFFF):x}" for _ in range(8)]
    return "2001:db8::" + ":".join(groups[:3]) if rng.random() < 0.5 else ":".join(groups)


def _api_key(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits
    body = "".join(rng.choice(alphabet) for _ in range(40))
    prefix = rng.choice(["sk-proj-", "ghp_", "glpat-", "hvn_", "AKIA"])
    return prefix + (body[:16].upper() if prefix == "AKIA" else body)


def _secret(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits
    while True:
        token = "".join(rng.choice(alphabet) for _ in range(rng.randint(32, 48)))
        if any(c.isdigit() for c in token) and any(c.isupper() for c in token) and any(c.islower() for c in token):
            return token


_STREETS = ("Main", "Oak", "Maple", "Washington", "Lake", "Hill", "Park", "Elm", "Cedar", "Sunset", "King", "Queen",
            "Church", "Victoria", "Station", "High", "Mill", "Bridge")
_US_CITIES = (("Springfield", "IL"), ("Austin", "TX"), ("Portland", "OR"), ("Denver", "CO"), ("Boston", "MA"),
              ("Columbus", "OH"), ("Madison", "WI"))
_CA_CITIES = (("Toronto", "ON"), ("Montreal", "QC"), ("Vancouver", "BC"), ("Calgary", "AB"), ("Ottawa", "ON"))
_GB_CITIES = ("London", "Manchester", "Leeds", "Bristol", "Glasgow", "Cardiff", "York")
_GB_UNIT = "ABDEFGHJLNPQRSTUWXYZ"  # letters a UK inward code uses


def _address(rng: random.Random) -> str:
    """A street address of the United States (half), Canada or the United Kingdom, as people write them."""
    country = rng.choice(["US", "US", "CA", "GB"])
    street = rng.choice(_STREETS)
    if country == "US":
        city, state = rng.choice(_US_CITIES)
        suffix = rng.choice(["St", "Street", "Ave", "Avenue", "Blvd", "Road", "Rd", "Lane", "Dr", "Drive"])
        unit = rng.choice(["", f" Apt {rng.randint(1, 40)}", f" Suite {rng.randint(100, 999)}"])
        return f"{rng.randint(1, 9999)} {street} {suffix}{unit}, {city}, {state} {rng.randint(10000, 99999)}"
    if country == "CA":
        city, province = rng.choice(_CA_CITIES)
        code = (f"{rng.choice('KLMNPT')}{rng.randint(1, 9)}{rng.choice('ABCEGHJ')} "
                f"{rng.randint(1, 9)}{rng.choice('ABCEGHJ')}{rng.randint(1, 9)}")
        return f"{rng.randint(1, 9999)} {street} {rng.choice(['Street', 'Avenue', 'Road'])}, {city}, {province} {code}"
    inward = f"{rng.randint(1, 9)}{rng.choice(_GB_UNIT)}{rng.choice(_GB_UNIT)}"
    code = f"{rng.choice('EMBLSGN')}{rng.randint(1, 20)} {inward}"
    return f"{rng.randint(1, 300)} {street} {rng.choice(['Street', 'Road', 'Lane'])}, {rng.choice(_GB_CITIES)} {code}"


NATIONAL_ADDRESSES: dict[str, tuple[str, ...]] = {
    "fr": ("12 rue de la Paix, 75002 Paris", "8 avenue Foch, 69006 Lyon", "3 place Bellecour 69002 Lyon",
           "45 boulevard Haussmann, 75009 Paris", "27 chemin des Vignes, 13100 Aix-en-Provence"),
    "zh": ("北京市朝阳区建国路88号", "上海市浦东新区世纪大道100号", "广东省深圳市南山区科技园路1号",
           "四川省成都市武侯区人民南路四段12号", "浙江省杭州市西湖区文三路259号"),
    "ar": ("شارع الملك فهد، الرياض 12271", "١٥ شارع التحرير، القاهرة", "شارع الشيخ زايد، دبي",
           "٢٢ شارع الحمراء، بيروت", "شارع محمد الخامس، الرباط 10000"),
    "hi": ("मकान नं. 12, सेक्टर 15, नोएडा 201301", "45, महात्मा गांधी मार्ग, लखनऊ 226001",
           "फ्लैट 3बी, शांति निवास, पुणे 411001", "7, राजपथ, नई दिल्ली 110001", "22, एम.जी. रोड, बेंगलुरु 560001"),
    "en": ("Flat 2, 14 Rose Court, Dublin D02 X285", "Unit 5, 20 George St, Sydney NSW 2000",
           "Level 3, 80 Queen Street, Auckland 1010", "PO Box 4512, Nairobi 00100", "Plot 7, Kampala Road, Kampala"),
}
"""Real-format addresses the ADDRESS detector does not claim (each language's own national formats; for English,
Ireland, Australia, New Zealand, Kenya and Uganda), set into the same sentences as the claimed ones."""


def national_address_texts() -> list[LabelledText]:
    """The addresses of :data:`NATIONAL_ADDRESSES` in their language's ADDRESS sentence, labelled."""
    texts = []
    for language, addresses in NATIONAL_ADDRESSES.items():
        before, after = FRAMES[language]["ADDRESS"].split("{v}")
        for address in addresses:
            texts.append(LabelledText(language, before + address + after,
                                      (("ADDRESS", len(before), len(before) + len(address)),)))
    return texts


def _distractor(rng: random.Random) -> str:
    kind = rng.randrange(9)
    if kind == 7:  # a house-number-like count and a street-like word, but no address
        return f"{rng.randint(2, 999)} {rng.choice(_STREETS)} packages, batch {rng.randint(10000, 99999)}"
    if kind == 8:
        return f"{rng.randint(2, 99)} boxes from Station {rng.randint(1, 9)}, gate {rng.randint(1, 40)}"
    if kind == 0:  # a 16-digit number with a wrong Luhn digit
        body = "4" + _digits(rng, 14)
        return body + str((int(luhn.calc_check_digit(body)) + 1 + rng.randrange(8)) % 10)
    if kind == 1:  # an 18-digit ID with a wrong check digit
        good = _cn_ric(rng)
        wrong = [c for c in "0123456789X" if c != good[-1]]
        return good[:-1] + rng.choice(wrong)
    if kind == 2:
        return f"{rng.randint(2020, 2026)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
    if kind == 3:
        return f"v{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 99)}"
    if kind == 4:  # a git commit hash: an identifier, not a secret
        return "".join(rng.choice("0123456789abcdef") for _ in range(40))
    if kind == 5:
        return f"{rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}"
    return f"#{_digits(rng, rng.randint(5, 11))}"


GENERATORS: dict[str, Callable[[random.Random], str]] = {
    "EMAIL": _email, "PHONE": _phone, "CARD": _card, "IBAN": _iban, "CN_RESIDENT_ID": _cn_ric,
    "AADHAAR": _aadhaar, "US_SSN": _ssn, "IP_ADDRESS": _ip, "API_KEY": _api_key, "SECRET": _secret,
    "ADDRESS": _address,
}


def generate(per_kind_and_language: int = 45, distractors_per_language: int = 60, seed: int = 7) -> list[LabelledText]:
    """Labelled texts: ``per_kind_and_language`` values of each kind in each language, plus distractors."""
    rng = random.Random(seed)
    texts: list[LabelledText] = []
    for language in LANGUAGES:
        for kind, make in GENERATORS.items():
            for _ in range(per_kind_and_language):
                value = make(rng)
                if language in NATIVE_DIGITS and kind in ("PHONE", "CARD") and rng.random() < 0.3:
                    value = value.translate(NATIVE_DIGITS[language])  # as typed on a phone keyboard there
                before, after = FRAMES[language][kind].split("{v}")
                texts.append(LabelledText(language, before + value + after,
                                          ((kind, len(before), len(before) + len(value)),)))
        for _ in range(distractors_per_language):
            value = _distractor(rng)
            texts.append(LabelledText(language, DISTRACTOR_FRAMES[language].format(v=value), ()))
    return texts


@dataclass(frozen=True)
class Score:
    true_positives: int
    false_positives: int
    false_negatives: int

    @property
    def precision(self) -> float:
        found = self.true_positives + self.false_positives
        return self.true_positives / found if found else 1.0

    @property
    def recall(self) -> float:
        real = self.true_positives + self.false_negatives
        return self.true_positives / real if real else 1.0


def score(texts: list[LabelledText], find: Callable[[str], list[tuple[str, int, int]]]) -> dict[tuple[str, str], Score]:
    """Exact-span scores per (kind, language): a detection counts only with the right kind and boundaries."""
    counts: dict[tuple[str, str], list[int]] = {}
    for text in texts:
        gold = set(text.spans)
        found = set(find(text.text))
        for kind, *_ in gold | found:
            counts.setdefault((kind, text.language), [0, 0, 0])
        for span in gold & found:
            counts[(span[0], text.language)][0] += 1
        for span in found - gold:
            counts[(span[0], text.language)][1] += 1
        for span in gold - found:
            counts[(span[0], text.language)][2] += 1
    return {key: Score(*values) for key, values in sorted(counts.items())}
