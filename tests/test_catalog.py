"""The matter catalog (the annex) and the platform recommendation built on it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from contracts.vocab import Unsure
from hotline_link.settings import load_catalog
from transfer.catalog import (EMERGENCY_MODEL, EMERGENCY_MODEL_AT_110, EMERGENCY_MODEL_NEAR,
                              EMERGENCY_MODEL_URGENT, NEAREST, NEAREST_EMERGENCIES, PLACED_AT_110,
                              URGENT_CATEGORY_SHARE, CatalogError, Classified, Nearest, parse,
                              recommend)

CATALOG = load_catalog()

ANNEX_110_TO_12345 = ["public_facilities", "city_environment", "landscaping", "construction",
                      "environment_protection", "consumer_rights", "market_supervision",
                      "utilities_incident", "other"]
ANNEX_12345_TO_110 = ["road_traffic", "public_order", "emergencies", "property_safety",
                      "police_first_help", "stability_leads", "police_conduct",
                      "hotline_harassment"]


def test_the_catalog_holds_every_annex_category_once():
    codes = [c.code for c in CATALOG.categories]
    assert codes == ANNEX_110_TO_12345 + ANNEX_12345_TO_110


@pytest.mark.parametrize("code", ANNEX_110_TO_12345)
def test_categories_110_passes_on_belong_to_12345(code):
    rec = recommend(CATALOG, code=code)
    assert (rec.platform, rec.category, rec.emergency) == ("12345", code, False)


@pytest.mark.parametrize("code", ANNEX_12345_TO_110)
def test_categories_12345_passes_on_belong_to_110(code):
    rec = recommend(CATALOG, code=code)
    assert (rec.platform, rec.category, rec.emergency) == ("110", code, False)


@pytest.mark.parametrize("text, code, platform", [
    ("小区门口井盖缺失了", "public_facilities", "12345"),
    ("路边有人乱倒垃圾", "city_environment", "12345"),
    ("大风把树木倾倒在路上", "landscaping", "12345"),
    ("工地夜里施工扰民", "construction", "12345"),
    ("工厂生产噪音太大", "environment_protection", "12345"),
    ("买到的产品质量有问题", "consumer_rights", "12345"),
    ("老板拖欠工资 劳资纠纷", "market_supervision", "12345"),
    ("小区停水了", "utilities_incident", "12345"),
    ("物业管理不作为", "other", "12345"),
    ("路口交通信号灯坏了", "road_traffic", "110"),
    ("楼上装修噪音很大", "public_order", "110"),
    ("有群体性事件", "emergencies", "110"),
    ("接到电话诈骗", "property_safety", "110"),
    ("反映影响社会稳定的线索", "stability_leads", "110"),
    ("我要投诉警察", "police_conduct", "110"),
    ("这个号码一直恶意骚扰热线", "hotline_harassment", "110"),
    ("the traffic light at the crossing is broken", "road_traffic", "110"),
    ("a pothole outside number 5", "public_facilities", "12345"),
])
def test_descriptions_find_their_category(text, code, platform):
    rec = recommend(CATALOG, text=text)
    assert (rec.category, rec.platform, rec.emergency) == (code, platform, False), rec.reason


@pytest.mark.parametrize("text, category", [
    ("燃气泄漏 有人晕倒", "utilities_incident"),        # a 12345 category, but life is in danger
    ("there is a fire and someone is trapped", None),
    ("有人持刀打架", None),
])
def test_an_emergency_goes_to_110_first_whatever_the_category(text, category):
    rec = recommend(CATALOG, text=text)
    assert rec.emergency and rec.platform == "110" and rec.category == category
    assert rec.reason.startswith("emergency")


def test_an_emergency_description_overrides_a_12345_code():
    rec = recommend(CATALOG, code="utilities_incident", text="gas leak, a man is unconscious")
    assert (rec.platform, rec.emergency) == ("110", True)


def _sure_of_danger(text: str) -> Classified:
    """A model that reads every scare as an emergency (0.99), as a trained one does when the
    words of the scare outweigh the words that end it."""
    return Classified({"consultation": 1.0}, {"12345": 1.0}, 0.99)


@pytest.mark.parametrize("text, emergency", [
    ("我老公车的定位显示在江里，吓一跳，他打电话说在跨江大桥上堵着呢，虚惊一场", False),
    # a call back is no ending: it may bring worse ("小声说被人带上车了")
    ("我女儿刚回电话，小声说被人带上车了，不知道在哪", True),
    # nor is a hope, nor an ending the words go on from
    ("我女儿昨晚出门到现在没回来，电话关机，只要她平安回来就好", True),
    ("我老婆已经回家了，他又追过来在楼下喊要弄她", True),
    ("刚把孩子接回来了，他现在还在砸", True),
    ("视频里我奶奶吃汤圆噎了一下，爷爷拍了几下背，现在好好的", False),
    ("我爸喝多了躺在公园长椅上，朋友已经把他接回家了", False),
    ("车在高速上没油了，已经推到应急车道，人都在护栏外面，问下救援电话多少", False),
    ("我妈晕倒了，120电话多少", True),
    ("我在山顶民宿，手机快没电了，明早几点有下山的大巴？", False),
    # a question asked first is no ending
    ("你好，请问人民公园几点关门？我孙子刚才在湖边玩，他跑开了", True),
    # ended well for one, not the other: a cue still decides
    ("孩子已经回来了，可是他说同学还在河里没上来", True),
    # "还好好的" is how a sudden collapse is told, not an ending
    ("我爸刚才还好好的，突然就说不出话了", True),
    # without the words that end it, the model's 0.99 stands
    ("女朋友电话里喊了一声就断了", True),
])
def test_words_that_end_the_scare_or_only_ask_are_not_overruled_by_the_model(text, emergency):
    rec = recommend(CATALOG, text=text, classify=_sure_of_danger)
    assert rec.emergency is emergency, rec.reason
    if not emergency:
        assert "it ended well or only asks" in rec.emergency_why, rec.emergency_why


def _urgent_kind(share: float, p_emergency: float):
    """A model that places a description among 110's urgent kinds with ``share`` between them and
    whose emergency model gives it ``p_emergency``."""
    labels = {"police_first_help": share / 2 + 0.01, "emergencies": share / 2 - 0.01,
              "public_facilities": 1.0 - share}
    return lambda text: Classified(labels, {"110": share, "12345": 1.0 - share}, p_emergency)


@pytest.mark.parametrize("share, p_emergency, text, emergency", [
    # no cue of danger in the words; the category is one the police act on first
    (0.60, 0.15, "我这边有个情况想请你们先过来看看", True),
    (URGENT_CATEGORY_SHARE, EMERGENCY_MODEL_URGENT, "我这边有个情况想请你们先过来看看", True),
    (URGENT_CATEGORY_SHARE - 0.01, 0.30, "我这边有个情况想请你们先过来看看", False),  # not there
    (0.90, 0.09, "我这边有个情况想请你们先过来看看", False),    # the model does not lean
    # calm words keep the bar where it was
    (0.90, 0.30, "我这边有个情况想请你们先过来看看，人都没事", False),
])
def test_a_matter_the_police_act_on_first_needs_only_a_lean_to_danger(
        share, p_emergency, text, emergency):
    rec = recommend(CATALOG, text=text, classify=_urgent_kind(share, p_emergency))
    assert rec.emergency is emergency, rec.emergency_why
    if emergency:
        assert rec.platform == "110"
        assert rec.emergency_why.startswith("emergency: 需要公安机关先期紧急处置的求助事项 (help "
                                            f"that needs police emergency action first) {share:.2f}"
                                            f", and the model leans to danger ({p_emergency:.2f})")


def _police_matter(share: float, p_emergency: float):
    """A model that places a description at 110 with ``share``, in a kind the police need not act
    on first (public order), and whose emergency model gives it ``p_emergency``."""
    return lambda text: Classified({"public_order": share, "public_facilities": 1.0 - share},
                                   {"110": share, "12345": 1.0 - share}, p_emergency)


@pytest.mark.parametrize("share, p_emergency, text, emergency", [
    (PLACED_AT_110, EMERGENCY_MODEL_AT_110, "楼下那几个人又在那儿闹了，你们过来看看", True),
    (0.95, 0.30, "楼下那几个人又在那儿闹了，你们过来看看", True),
    (PLACED_AT_110 - 0.01, 0.30, "楼下那几个人又在那儿闹了，你们过来看看", False),  # not placed
    (0.95, EMERGENCY_MODEL_AT_110 - 0.01, "楼下那几个人又在那儿闹了，你们过来看看", False),
    # calm words keep the calm bar
    (0.95, 0.50, "楼下那几个人又在那儿闹了，人都没事", False),
])
def test_a_matter_placed_at_110_needs_less_of_the_emergency_model(
        share, p_emergency, text, emergency):
    rec = recommend(CATALOG, text=text, classify=_police_matter(share, p_emergency))
    assert rec.emergency is emergency, rec.emergency_why
    assert rec.platform == "110"
    if emergency and p_emergency < EMERGENCY_MODEL:
        assert rec.emergency_why.startswith(
            f"emergency: reads like the corpus's emergencies (model {p_emergency:.2f}; a matter "
            f"of 110's ({share:.2f}): its bar {EMERGENCY_MODEL_AT_110:.2f})"), rec.emergency_why


def _near(emergencies: int, p_emergency: float):
    """A model that places a description at 12345 (a wall's repair), whose emergency model gives
    it ``p_emergency``, and of whose ``NEAREST`` nearest training descriptions ``emergencies``
    are emergencies."""
    return lambda text: Classified({"public_facilities": 0.9, "public_order": 0.1},
                                   {"12345": 0.9, "110": 0.1}, p_emergency,
                                   nearest=Nearest(emergencies, "学校围墙裂缝越来越大，砖头往下掉，孩子马上放学"))


WALL = "学校边上那段老围墙的缝一上午宽了一指"


@pytest.mark.parametrize("emergencies, p_emergency, text, emergency", [
    (NEAREST_EMERGENCIES, EMERGENCY_MODEL_NEAR, WALL, True),
    (NEAREST, 0.30, WALL, True),
    (NEAREST_EMERGENCIES - 1, 0.30, WALL, False),                  # the nearest are not
    (NEAREST, EMERGENCY_MODEL_NEAR - 0.01, WALL, False),           # the model does not lean
    # calm words, or a scare over, are not overruled by the corpus's likeness either
    (NEAREST, 0.30, WALL + "，已经拉上警戒线了，人都没事", False),
    (NEAREST, 0.30, WALL + "，后来一看是误会一场", False),
])
def test_a_description_near_the_corpus_emergencies_needs_only_a_lean_to_danger(
        emergencies, p_emergency, text, emergency):
    rec = recommend(CATALOG, text=text, classify=_near(emergencies, p_emergency))
    assert rec.emergency is emergency, rec.emergency_why
    if emergency:
        assert rec.platform == "110"
        assert rec.emergency_why.startswith(
            f"emergency: {emergencies} of the {NEAREST} descriptions of the corpus nearest in "
            f"meaning are emergencies (the nearest: \"学校围墙裂缝越来越大，砖头往下掉，孩子马上放学\"), "
            f"and the model leans to danger ({p_emergency:.2f})"), rec.emergency_why
    else:
        assert rec.platform == "12345", rec.reason


def test_the_nearest_emergency_quoted_is_cut_short():
    long = "我们楼下那根燃气管道一直在嘶嘶响，味道特别冲，" * 5
    rec = recommend(CATALOG, text=WALL, classify=lambda text: Classified(
        {"public_facilities": 0.9, "public_order": 0.1}, {"12345": 0.9, "110": 0.1}, 0.2,
        nearest=Nearest(NEAREST, long)))
    assert rec.emergency
    quoted = rec.emergency_why.split("(the nearest: \"")[1].split("\")")[0]
    assert len(quoted) == 60 and quoted.endswith("…") and long.startswith(quoted[:-1])


def _reads(platform: str, known: float | None):
    """A model that leans clearly to ``platform`` and knows ``known`` of the words of a text not
    mostly in Chinese characters (None: Chinese text)."""
    label = "public_facilities" if platform == "12345" else "public_order"
    other = "110" if platform == "12345" else "12345"
    return lambda text: Classified({label: 0.9, "other": 0.1}, {platform: 0.9, other: 0.1}, 0.1,
                                   0.9, known)


@pytest.mark.parametrize("text, platform, known, answer", [
    # Thai and Spanish: a street light out for three days, most words unknown to the model
    ("ไฟถนนหน้าบ้านเสียมาสามวันแล้ว", "12345", 0.0, None),
    ("La farola delante de mi casa lleva tres días apagada", "12345", 0.3, None),
    ("La farola delante de mi casa lleva tres días apagada", "12345", 0.5, None),   # half: no
    # the same, most words known: the model's answer stands
    ("La farola delante de mi casa lleva tres días apagada", "12345", 0.6, "12345"),
    # Chinese text: a 12345 answer needs no more than any answer does
    ("门口路灯坏了三天了", "12345", None, "12345"),
    # 110 is the side to err on: it stays
    ("ไฟถนนหน้าบ้านเสียมาสามวันแล้ว", "110", 0.0, "110"),
])
def test_a_language_the_model_hardly_reads_gets_no_12345_answer_as_if_all_were_well(
        text, platform, known, answer):
    rec = recommend(CATALOG, text=text, classify=_reads(platform, known))
    assert rec.platform == answer and not rec.emergency, rec.reason
    if answer is None:
        assert rec.reason == (f"no recommendation: a language it learnt little of ({known:.0%} "
                              "of the words known): it cannot rule out an emergency (110 0.10 / "
                              "12345 0.90); an agent decides")
        assert [a.label for a in rec.alternatives] == ["public_facilities", "other"]
        assert rec.emergency_why == ("no emergency: no cue of danger; it cannot rule one out in "
                                     f"words it learnt little of ({known:.0%} known)")
        assert rec.unsure == Unsure.LANGUAGE
    else:
        assert rec.unsure == ""


def test_a_language_it_hardly_reads_keeps_the_reason_it_had_for_being_unsure():
    """Where the answer was unsure anyway, its reason stays; the emergency's says why it cannot
    be ruled out, and the word for a dialplan is the language's."""
    def unsure(text):
        return Classified({"public_facilities": 0.5, "public_order": 0.4, "other": 0.1},
                          {"12345": 0.55, "110": 0.45}, 0.1, 0.9, 0.2)

    rec = recommend(CATALOG, text="Mein Nachbar ist seit zwei Tagen nicht zu sehen",
                    classify=unsure)
    assert rec.platform is None and rec.reason.startswith("no recommendation: not sure which "
                                                          "platform"), rec.reason
    assert rec.emergency_why.endswith("it cannot rule one out in words it learnt little of "
                                      "(20% known)"), rec.emergency_why
    assert rec.unsure == Unsure.LANGUAGE      # what a dialplan acts on: an interpreter


def _says(labels: dict[str, float], platforms: dict[str, float], coverage: float = 0.9):
    return lambda text: Classified(labels, platforms, 0.1, coverage)


@pytest.mark.parametrize("kwargs, unsure", [
    ({}, Unsure.NO_INPUT),
    ({"code": "no_such_code"}, Unsure.UNKNOWN_CODE),
    ({"text": "今天天气怎么样"}, Unsure.NO_MATCH),                 # no model, no catalog term
    ({"text": "xyzzy", "classify": _says({"other": 1.0}, {"12345": 1.0}, 0.1)},
     Unsure.UNKNOWN_WORDS),
    ({"text": "喂喂你好", "classify": _says({"unclear": 0.6, "other": 0.4}, {"12345": 0.4})},
     Unsure.NOTHING_TO_PLACE),
    ({"text": "楼下有点事", "classify": _says({"other": 0.5, "public_order": 0.5},
                                          {"12345": 0.5, "110": 0.5})}, Unsure.PLATFORM),
    ({"text": "路灯坏了", "classify": _says({"public_facilities": 1.0}, {"12345": 1.0})}, ""),
    ({"code": "road_traffic"}, ""),
])
def test_an_answer_with_no_platform_says_why_in_a_word_a_dialplan_can_branch_on(kwargs, unsure):
    rec = recommend(CATALOG, **kwargs)
    assert rec.unsure == unsure and (rec.platform is None) == bool(unsure), rec.reason


@pytest.mark.parametrize("kwargs", [{"text": "今天天气怎么样"}, {"code": "no_such_code"}, {}])
def test_unknown_input_is_a_clear_no_recommendation(kwargs):
    rec = recommend(CATALOG, **kwargs)
    assert rec.platform is None and rec.reason.startswith("no recommendation")


def test_departments_are_notified_where_the_annex_says_so():
    assert recommend(CATALOG, code="emergencies").notify_departments
    assert recommend(CATALOG, code="stability_leads").notify_departments
    assert not recommend(CATALOG, code="road_traffic").notify_departments


def test_an_invalid_catalog_names_every_problem():
    with pytest.raises(CatalogError) as info:
        parse({"to_110": [{"code": "Bad Code"}, {"code": "ok", "name": "n", "gloss": "g",
                                                 "examples": "not a list", "colour": 1}],
               "to_12345": []})
    assert info.value.problems == [
        "to_12345: expected a non-empty list of categories",
        "to_110[0].code: 'Bad Code' is not a matter code (a-z, 0-9, _)",
        "to_110[1].colour: unknown key",
        "to_110[1].examples: expected a list of non-empty strings",
        "emergency: expected a table",
    ]


def test_cli_recommend_and_check_catalog():
    out = subprocess.run([sys.executable, "-m", "hotline_link.cli", "recommend", "--json",
                          "--code", "public_order"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert '"platform": "110"' in out.stdout and '"category": "public_order"' in out.stdout
    bad = subprocess.run([sys.executable, "-m", "hotline_link.cli", "check-catalog",
                          "tests/lab.toml"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "to_12345: expected a non-empty list" in bad.stderr
