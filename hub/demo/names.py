"""Chinese names, resident IDs, phone numbers and regions, as a county's records hold them.

Pure generators, each drawing from the ``random.Random`` it is given, so whoever calls them in
the same order with the same seed gets the same people.  Shared by ``hub demo`` and the patient
index benchmark (tests/bench/identity_data.py), which relies on the order of the draws: change
a function's draws and the benchmark's population changes with it.
"""

from __future__ import annotations

import random
from datetime import date

from adapters.feeds.resident_id import check_character, parse_resident_id

# (surname, relative frequency): the most common Chinese surnames, roughly by population.
SURNAMES = [
    ("王", 72), ("李", 71), ("张", 67), ("刘", 54), ("陈", 47), ("杨", 33), ("黄", 25),
    ("赵", 22), ("吴", 21), ("周", 20), ("徐", 17), ("孙", 16), ("马", 15), ("朱", 14),
    ("胡", 13), ("郭", 12), ("何", 12), ("林", 11), ("高", 11), ("罗", 10), ("郑", 10),
    ("梁", 9), ("谢", 8), ("宋", 7), ("唐", 7), ("许", 7), ("韩", 6), ("冯", 6), ("邓", 6),
    ("曹", 6), ("彭", 5), ("曾", 5), ("肖", 5), ("田", 5), ("董", 5), ("潘", 4), ("袁", 4),
    ("蔡", 4), ("蒋", 4), ("余", 4), ("于", 4), ("杜", 4), ("叶", 4), ("程", 4), ("沈", 3),
    ("姚", 3), ("钱", 3), ("施", 2), ("单", 1), ("查", 1), ("仇", 1), ("欧阳", 1),
]  # fmt: skip
GIVEN_MALE = "伟强磊军勇杰涛明超刚平辉斌鹏华飞建国峰志文龙海波宇浩俊晨毅振东林"
GIVEN_FEMALE = "芳娜敏静丽艳娟霞秀英兰玲婷燕红梅琳雪慧颖倩洁萍晶佳欣怡悦月蓉"
# A character and characters an input method offers for the same pinyin.
HOMOPHONES = {
    "张": "章", "王": "汪", "李": "黎", "刘": "柳", "徐": "许", "杨": "阳", "吴": "伍",
    "伟": "玮炜", "明": "鸣铭", "静": "婧", "丽": "莉俐", "军": "君", "娟": "鹃", "芳": "方",
    "红": "虹鸿", "英": "瑛", "霞": "侠", "峰": "锋丰", "涛": "韬", "勇": "永", "艳": "燕",
    "辉": "晖", "斌": "彬", "林": "琳霖", "玲": "铃", "婷": "亭", "梅": "玫", "兰": "岚",
    "华": "骅", "杰": "洁", "敏": "珉", "平": "萍", "建": "健", "宇": "雨", "晨": "辰",
}  # fmt: skip
# Real county-level divisions (GB/T 2260): code, province, prefecture, county.  Most people
# live in the demo county (德清县) and its neighbours.
REGIONS = [
    ("330521", "浙江省", "湖州市", "德清县"), ("330522", "浙江省", "湖州市", "长兴县"),
    ("330523", "浙江省", "湖州市", "安吉县"), ("330502", "浙江省", "湖州市", "吴兴区"),
    ("330503", "浙江省", "湖州市", "南浔区"), ("330106", "浙江省", "杭州市", "西湖区"),
    ("330110", "浙江省", "杭州市", "余杭区"), ("330122", "浙江省", "杭州市", "桐庐县"),
    ("330127", "浙江省", "杭州市", "淳安县"), ("330182", "浙江省", "杭州市", "建德市"),
    ("330282", "浙江省", "宁波市", "慈溪市"), ("330381", "浙江省", "温州市", "瑞安市"),
    ("330421", "浙江省", "嘉兴市", "嘉善县"), ("330481", "浙江省", "嘉兴市", "海宁市"),
    ("330483", "浙江省", "嘉兴市", "桐乡市"), ("330681", "浙江省", "绍兴市", "诸暨市"),
    ("330782", "浙江省", "金华市", "义乌市"), ("331002", "浙江省", "台州市", "椒江区"),
    ("320583", "江苏省", "苏州市", "昆山市"), ("320582", "江苏省", "苏州市", "张家港市"),
    ("320481", "江苏省", "常州市", "溧阳市"), ("340103", "安徽省", "合肥市", "庐阳区"),
    ("341502", "安徽省", "六安市", "金安区"), ("341802", "安徽省", "宣城市", "宣州区"),
    ("360121", "江西省", "南昌市", "南昌县"), ("410102", "河南省", "郑州市", "中原区"),
    ("411722", "河南省", "驻马店市", "上蔡县"), ("420106", "湖北省", "武汉市", "武昌区"),
    ("430104", "湖南省", "长沙市", "岳麓区"), ("510107", "四川省", "成都市", "武侯区"),
    ("511321", "四川省", "南充市", "南部县"), ("370102", "山东省", "济南市", "历下区"),
    ("440106", "广东省", "广州市", "天河区"), ("450102", "广西壮族自治区", "南宁市", "兴宁区"),
]  # fmt: skip
REGION_WEIGHTS = [40, 8, 8, 6, 5] + [1] * (len(REGIONS) - 5)
VILLAGES = "石桥 柳树 新联 红旗 东风 前进 杨家 王家 沙湾 塘头 大庄 新民 三合 永安 和平 桥东".split()
# Which resident IDs the checks below take as valid: none born after this day.
LAST_BIRTH = date(2026, 6, 30)


def resident_id(region: str, born: date, sex: str, rng: random.Random) -> str:
    """A valid 18-character 居民身份证号 (GB 11643): region, birth date, a sequence number
    that is odd for men and even for women, and the MOD 11-2 check character."""
    seq = rng.randrange(0, 500) * 2 + (1 if sex == "male" else 0)
    body = f"{region}{born:%Y%m%d}{seq:03d}"
    return body + check_character(body)


def mistype(value: str, rng: random.Random) -> str:
    """One character changed so that the check fails (every single error is caught)."""
    while True:
        i = rng.randrange(18)
        typo = value[:i] + rng.choice("0123456789".replace(value[i], "")) + value[i + 1 :]
        try:
            parse_resident_id(typo, today=LAST_BIRTH)
        except ValueError:
            return typo


def surname(rng: random.Random) -> str:
    return rng.choices([s for s, _ in SURNAMES], weights=[w for _, w in SURNAMES])[0]


def given(sex: str, rng: random.Random) -> str:
    chars = GIVEN_MALE if sex == "male" else GIVEN_FEMALE
    return "".join(rng.choice(chars) for _ in range(rng.choice((1, 2, 2))))


def homophone(text: str, rng: random.Random) -> str:
    """``text`` with one character swapped for one an input method offers for its pinyin."""
    positions = [i for i, c in enumerate(text) if c in HOMOPHONES]
    if not positions:
        return text
    i = rng.choice(positions)
    return text[:i] + rng.choice(HOMOPHONES[text[i]]) + text[i + 1 :]


def phone(rng: random.Random) -> str:
    """A mainland mobile number (11 digits, 13x-19x)."""
    return f"1{rng.choice('3456789')}{rng.randrange(10**9):09d}"
