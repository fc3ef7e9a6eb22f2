"""A caller's description as the recommender reads it: in simplified Mandarin, as the corpus and
the danger cues are written. Traditional characters are converted with OpenCC, written Cantonese
is read as the Mandarin it means, full-width letters and digits are ASCII (``normalise``): the
model is trained on the same reading (``recommender.train``), so what it learnt and what it
reads cannot drift. A recogniser's spaces between words are read away where a description
arrives (``unspaced``), not in the training: see there."""

from __future__ import annotations

import math
import re
import threading
import unicodedata

# Full-width letters and digits (an input method left in full-width mode: "ＧＡＳ", "１２０") are
# the ASCII ones. Full-width punctuation stays: the danger cues are written with it.
_WIDTH = {c: c - 0xFEE0 for r in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
          for c in range(r[0], r[1] + 1)}
_KANA = re.compile(r"[\u3040-\u30ff]")
# 著 is simplified in its own words (著名, 显著, 昭著, 合著, 著书); anywhere else it is 着 written
# the traditional way (著火, 拿著刀, 睡不著).
_ZHU_AS_ZHE = re.compile(r"(?<![显土卓编原名巨专论昭合译遗新拙])著(?![名作称述书者录])")
# Characters that simplified text has too but traditional text writes for another word (回覆 is
# 回复, 傢俱 家具, 瞭解 了解, 藉口 借口, 甦醒 苏醒, 揹 背): changed only in a traditional text.
_AMBIGUOUS = frozenset("覆俱瞭藉甦揹")
_CONVERSIONS = ("tw2s", "hk2s", "t2s")      # Taiwan's variants first, then Hong Kong's
_opencc_lock = threading.Lock()
_converters: dict[str, object] = {}
_opencc_error: str | None = None
_traditional: frozenset[str] = frozenset()


def _common(ch: str) -> bool:
    # A character converted to one outside the common block is no traditional form but a
    # dialect's own (Cantonese 嗰, 燶, 餸): the corpus and the cues keep it as written.
    return "\u4e00" <= ch <= "\u9fff"


def _changed_alone(converter, chars: list[str]) -> set[str]:
    changed: set[str] = set()
    # One character a line, so no phrase spans two; in pieces, because OpenCC holds the GIL
    # while it converts and this runs beside the service's event loop.
    for i in range(0, len(chars), 1000):
        piece = chars[i:i + 1000]
        converted = converter.convert("\n".join(piece)).split("\n")
        changed |= {a for a, b in zip(piece, converted) if a != b and _common(b[0])}
    return changed


def _load_opencc() -> None:
    global _traditional
    import opencc

    blocks = (range(0x3400, 0x4DC0), range(0x4E00, 0xA000), range(0xF900, 0xFB00))
    chars = [chr(c) for block in blocks for c in block]
    converters = {name: opencc.OpenCC(name) for name in _CONVERSIONS}
    found: set[str] = set()
    for converter in converters.values():
        found |= _changed_alone(converter, chars)
    # 么 is simplified (什么) and only Taiwan's table turns it into 幺; 著 is the rule above.
    _traditional = frozenset(found - {"么", "著"})
    _converters.update(converters)


def opencc_ready(load: bool = True) -> bool:
    """Whether traditional characters can be converted; ``load``: load OpenCC now if need be
    (some 0.05 s: the recommender's loading thread does it, never the event loop). Without it the
    text is read as written and the error is kept for the log."""
    global _opencc_error
    if not _converters and load and _opencc_error is None:
        with _opencc_lock:
            if not _converters and _opencc_error is None:
                try:
                    _load_opencc()
                except Exception as exc:   # noqa: BLE001 - the text is then read as written
                    _opencc_error = f"{type(exc).__name__}: {exc}"
    return bool(_converters)


_HAN_GAP = re.compile(r"(?<=[\u4e00-\u9fff])[ \t\u3000]+(?=[\u4e00-\u9fff])")
_HAN = re.compile(r"[\u4e00-\u9fff]")
# Between characters, digits and Chinese punctuation: "1 2 0", "楼 ，" are spaced characters too.
_TEXT_CHAR = r"[\u4e00-\u9fff0-9\u3001-\u303f\uff01-\uff5e…“”‘’·]"
_TEXT_GAP = re.compile(rf"(?<={_TEXT_CHAR})[ \t\u3000]+(?={_TEXT_CHAR})")
_LATIN_WORD = re.compile(r"[A-Za-z]{2,}")
# After three characters or more a space parts clauses; after fewer it parts the words of one:
# "不是 着火" ("不是，着火" would cut off its negation), "喂 我在十八楼".
_CLAUSE_GAP = re.compile(r"(?<=[\u4e00-\u9fff]{3})[ \t\u3000]+(?=[\u4e00-\u9fff])")


def unspaced(text: str) -> str:
    """A description that arrives with spaces between Chinese words or characters, as some
    recognisers write them ("没有 人 受伤"), without them; one whose spaces part clauses, as
    callers type ("家里着火了 快来人"), with commas. Spaced so, the held-out set's descriptions
    without Latin letters lost 0.7 points of platform and 6 emergencies (words spaced) or 5.2
    points and 40 (characters), and the negation of "没有 人 受伤" no longer reached its cue.
    Text with a word in Latin letters too is a learner's and stays as written ("A 栋" is a
    building's letter).

    Not part of ``normalise``, so not of the training: the corpus keeps the spaces some of its
    writers put between a learner's words, and reading those 12 lines unspaced moved the
    emergency model enough to let go of 4 held-out emergencies and 3 of the tables' (none of
    them spaced; under cross-validation the same within noise)."""
    if not _HAN_GAP.search(text) or _LATIN_WORD.search(text):
        return text
    # Words (two characters on average, jieba's) or characters spaced: every space goes. Clauses
    # spaced ("喂 我在十八楼 楼道里全是烟 看不见", a caller's typing): their spaces are commas.
    runs = [len(_HAN.findall(part)) for part in text.split()]
    runs = [n for n in runs if n]
    if sum(runs) > 2.5 * len(runs):
        text = _CLAUSE_GAP.sub("，", text)
    return _TEXT_GAP.sub("", text)


def opencc_error() -> str | None:
    return _opencc_error


def normalise(text: str, load: bool = True) -> str:
    """The description in simplified characters, as the corpus and the cues are written.

    Callers from Hong Kong, Macau or Taiwan, and some input methods and recognisers, write
    traditional characters: "煤氣" shares one character with "煤气", so the model half knew such
    a text (held-out descriptions in traditional characters: 84.9 % placed, 78 emergencies
    missed, against 93.7 % and 27) and no cue matched it. A text in traditional characters is
    what OpenCC makes of it, character by character in context (Taiwan's variants, then Hong
    Kong's: "乾" is 干 or 乾 by its neighbours, "回覆" is 回复, "衞" is 卫). Not its phrase
    tables ("電線" became "电在线"). Only traditional characters change, and in a text with two
    of them or more the few that simplified text has too but traditional text writes for
    another word (覆 in 回覆): OpenCC reads simplified characters as traditional where it can
    ("打坏" became "打坯", "什么" "什幺"), so a text mixing both keeps its simplified part. A 著
    outside its own words (著名, 显著) becomes 着 ("著火了"). Text with kana is Japanese and
    stays as it is: its kanji are no traditional Chinese ("閉じ込め" is a Japanese cue).
    Full-width letters and digits are the ASCII ones, and written Cantonese is read as Mandarin
    (below). ``load``: see ``opencc_ready``."""
    text = text.translate(_WIDTH)
    if _KANA.search(text):
        return text
    traditional = sum(ch in _traditional for ch in text) if opencc_ready(load) else 0
    if traditional:
        whole = traditional > 1
        candidates = [_converters[name].convert(text) for name in _CONVERSIONS]
        if all(len(c) == len(text) for c in candidates):
            text = "".join(
                next((c for c in alternatives if c != ch and _common(c)), ch)
                if ch in _traditional or whole and ch in _AMBIGUOUS else ch
                for ch, *alternatives in zip(text, *candidates))
    if "著" in text:
        text = _ZHU_AS_ZHE.sub("着", text)
    return _mandarin(text) if _CANTONESE.search(text) else text


# --- written Cantonese ----------------------------------------------------------------------------

# Callers of Guangdong, Hong Kong and Macau write as they speak, and recognisers transcribe
# Cantonese speech so: "冇人受傷" is 没有人受伤, which the danger judgement's negation knows, and
# "個細路唔見咗" is 个小孩不见了, which its cues and the model know; as written, the corpus (in
# Mandarin) had never seen either, so a false alarm and a missed child. A text is read as
# Cantonese when it has a word no Mandarin text has (not 唔, which is also Mandarin's "um", nor
# 点样, 成日, 打交: 检测点样品, 完成日期, 打交警; nor 心口 or 扯筋, which Mandarin callers say
# too); then its words are read as their Mandarin.
_CANTONESE = re.compile(r"[咗嘅喺冇啲嚟佢嘢睇嗰畀攞搵揾噉㗎喎哋瞓嘥冚啱嗌掟揸撳揿唞嚿嬲𨋢咁冧]|"
                        r"屋企|隔篱|后生仔|差佬|跌亲|执笠|爆格|拗柴|荡失路|入面|闩晒|老豆|煞唔|落斜|"
                        r"唔识(?:应|反应|郁)|[紫青白]晒|唔到气|唞唔顺")
_CANTONESE_WORDS = {
    # negation: the set phrases first ("唔好意思" is no "不要")
    # (唔好 is mostly "don't": 不要, as a Mandarin caller says it; "叫他不要跳" stays an emergency)
    "唔好意思": "不好意思", "唔该": "麻烦", "唔系": "不是", "唔使": "不用", "唔好": "不要",
    "唔识": "不会", "唔见咗": "不见了", "唔郁": "不动", "唔知": "不知道", "唔得": "不行",
    "唔识反应": "没反应", "唔识郁": "不会动", "唔紧要": "不要紧", "系唔系": "是不是",
    "冇咗气": "没气了", "冇气": "没气", "冇事": "没事", "冇咗": "没了", "唔": "不", "冇": "没有",
    "咪郁": "别动",
    # can't (V唔到 is "not able to", not Mandarin's "not reaching")
    "行唔到": "走不了", "郁唔到": "动不了", "企唔到": "站不了", "咁耐": "这么久",
    "索唔到气": "喘不过气", "唞唔顺": "喘不过气", "唞唔到气": "喘不过气",
    "抖唔到气": "喘不过气", "透唔到气": "喘不过气", "透唔过气": "喘不过气", "讲唔到嘢": "说不出话",
    "起唔到身": "起不了身", "食唔落": "吃不下", "擘唔开": "睁不开", "擘大": "睁大",
    "闩唔埋": "关不上", "熄唔到": "灭不了", "闩晒": "全关了", "乱晒龙": "乱七八糟",
    # people
    "佢哋": "他们", "我哋": "我们", "你哋": "你们", "佢": "他", "细路": "小孩", "后生仔": "年轻人",
    "老豆": "爸爸", "老细": "老板", "差佬": "警察", "差人": "警察", "贼佬": "小偷", "贼仔": "小偷",
    # places, things, vehicles
    "屋企": "家", "隔篱": "隔壁", "入面": "里面", "屋邨": "小区", "屋苑": "小区",
    "管理处": "物业", "差馆": "派出所", "街市": "菜市场", "士多": "小卖部", "露台": "阳台",
    "冲凉房": "浴室", "冲凉": "洗澡", "石屎": "水泥",
    "铁枝": "铁栏杆", "水氹": "水坑", "水喉": "水管", "冷气机": "空调", "热水炉": "热水器",
    "炉头": "灶台", "石油气": "液化气", "电芯": "电池", "叉电": "充电",
    "电掣": "开关", "掣": "开关", "门罅": "门缝", "行人路": "人行道",
    "纸仔": "纸条", "𨋢": "电梯", "升降机": "电梯", "白车": "救护车", "电单车": "摩托车",
    "电鸡": "电动车", "泊车": "停车", "心口": "胸口",
    "追数": "讨债", "执咗笠": "倒闭了", "执笠": "倒闭", "爆格": "入室盗窃", "出粮": "发工资",
    "拖粮": "拖欠工资", "打风": "刮台风", "风球": "台风信号",
    "成层": "整层", "成身": "全身", "成晚": "整晚", "成樽": "整瓶", "成栋": "整栋", "成条": "整条", "成间": "整间",
    "嚿": "块",
    "呢度": "这里", "呢个": "这个", "呢啲": "这些", "呢间": "这间", "呢条": "这条", "呢排": "最近",
    "嗰度": "那里", "嗰个": "那个", "嗰啲": "那些", "嗰阵": "那时", "嗰": "那",
    "点样": "怎么样", "点解": "为什么", "点算": "怎么办", "点知": "谁知", "乜嘢": "什么",
    "咩事": "什么事", "咩": "什么", "乜": "什么", "嘢": "东西", "几耐": "多久", "几多": "多少",
    "几钱": "多少钱", "咁样": "这样", "犀利": "厉害",
    # aspect, particles, degree
    "咗": "了", "嘅": "的", "喺度": "在", "喺": "在", "喊紧": "在哭", "快啲": "快点",
    "快手啲": "快点", "好啲": "好点", "多啲": "多点", "差啲": "差点", "少少": "一点点", "啲": "些",
    "嚟": "来", "噉": "这样", "咁": "这么", "好似": "好像", "净系": "只是", "日日": "天天",
    "晚晚": "每晚", "即刻": "马上", "搞掂": "搞定", "就嚟": "快要", "唔该晒": "谢谢",
    "㗎": "的", "喎": "", "啩": "吧",
    # V住 is V着 (围住 a boy, 揽住 a child, 望住 the door)
    "围住": "围着", "揽住": "抱着", "扯住": "扯着", "指住": "指着", "望住": "看着",
    "睇住": "看着", "贴住": "贴着", "追住": "追着", "跟住": "跟着", "写住": "写着", "锁埋": "锁住",
    # what happens to people, and what they do
    "睇": "看", "畀人呃": "被人骗", "俾人呃": "被人骗", "呃钱": "骗钱", "呃人": "骗人",
    "畀人": "被人", "俾人": "被人", "畀": "给", "俾": "给", "攞住": "拿着",
    "拎住": "拿着", "揸住": "拿着", "揸车": "开车", "揸": "拿", "攞": "拿", "搵": "找", "揾": "找",
    "瞓低": "躺倒", "瞓觉": "睡觉", "瞓": "躺", "嗌交": "吵架", "掟": "扔", "嘥": "浪费",
    "跌咗落": "掉下", "跌落": "掉下", "跳落": "跳下", "落来": "下来", "落去": "下去", "行过": "走过", "跌亲": "摔伤",
    "跌低": "摔倒", "撞亲": "撞伤", "整亲": "弄伤", "烫亲": "烫伤", "伤亲": "受伤",
    "辘亲": "轧伤", "辘到": "轧到", "辘咗": "轧了", "斩人": "砍人", "斩伤": "砍伤", "斩死": "砍死",
    "劈人": "砍人", "劈伤": "砍伤", "劈死": "砍死", "揼人": "打人", "劏": "杀", "吊颈": "上吊",
    "遇溺": "溺水", "水浸": "水淹", "浸死": "淹死", "落雨": "下雨", "呕血": "吐血",
    "呕白泡": "吐白沫", "荡失路": "迷路", "荡失": "走失", "拗柴": "扭伤脚", "痴线": "疯了",
    "食嘢": "吃东西", "食饭": "吃饭", "食药": "吃药", "食咗": "吃了", "食晒": "吃光了",
    "食紧": "在吃", "饮紧": "在喝", "食烟": "抽烟", "嘈": "吵", "撳": "按", "揿": "按", "郁手": "动手",
    "嬲到爆": "气死了", "嬲": "生气", "救熄": "扑灭", "淋熄": "浇灭", "整熄": "弄灭",
    "整好": "修好", "整返好": "修好", "跌咗落地": "摔在地上", "跌落地": "摔在地上", "头爆": "头破",
    "收埋": "收走", "收线": "挂了电话", "烧衣": "烧纸", "讲嘢": "说话", "讲嬲嘢": "说气话", "着唔到火": "打不着火", "搵返": "找回来了",
    "揾返": "找回来了", "攞返": "拿回", "落车": "下车", "山卡啦": "偏僻山里", "山旮旯": "偏僻山里",
    "煞唔到掣": "刹不住车", "煞唔住": "刹不住", "煞掣": "刹车", "冲落斜": "冲下坡", "禁锢": "非法拘禁",
    "口唇": "嘴唇", "扯筋": "抽筋", "扯晒": "抽搐", "眼反白": "翻白眼", "心口翳": "胸闷", "佢哋话": "他们说",
    "佢话": "他说", "嬲到": "气得", "贵到抢钱咁": "贵得像抢钱一样", "贵到抢钱": "贵得像抢钱一样", "影紧": "在拍", "影相": "拍照",
    "影低": "拍下", "听人讲": "听人说",
    "我惊": "我怕", "好惊": "好怕", "使唔使": "要不要", "返工": "上班", "放工": "下班",
    "返学": "上学", "返屋企": "回家", "返嚟": "回来",
    # time
    "而家": "现在", "依家": "现在", "𠵱家": "现在", "头先": "刚才", "啱先": "刚才",
    "啱啱": "刚刚", "琴日": "昨天", "寻日": "昨天", "听日": "明天", "今日": "今天",
    "琴晚": "昨晚", "寻晚": "昨晚", "今朝": "今早", "听朝": "明早", "朝早": "早上",
    "下昼": "下午", "晏昼": "中午",
}
_CANTONESE_WORD = re.compile("|".join(sorted(map(re.escape, _CANTONESE_WORDS), key=len,
                                             reverse=True)))
# Words whose Mandarin depends on their neighbours.
_NOT_A_PLACE = r"(?<![路旁左右东西南北身河海湖江街台桥岸床窗门墙])"   # 路边个 is the roadside's
_CANTONESE_RULES = tuple((re.compile(pattern), mandarin) for pattern, mandarin in (
    (r"系咪", "是不是"),
    # 只系, 原来系, 其实系; not 中文系, 系统
    (r"(?:(?<=[只就都真我你他她也又来实但该])|(?<![^，。！？,.!?\s]))系(?![统列])", "是"),
    (r"打交(?![道警通])", "打架"),                           # not 打交道, 打交警队
    (r"个钟(?!头)", "个小时"),                               # 三个钟头 is Mandarin too
    (r"(?<!完)成日(?!期)", "总是"),
    (r"晕低(?![烧血])", "晕倒"),                             # not 头晕低烧
    (r"(?<!小心)火烛", "着火"),
    (r"企(?=在|住|起|埋|响|到)", "站"),                      # 企喺天台; not 企业
    (r"仲(?![裁介夏秋春冬])", "还"),                         # 仲喺; not 仲裁
    # 流紧血 is 在流血; not 要紧
    (r"在?([流烧打追冒漏落做看找叫等响跟拍震喊敲挖撬偷斩游吵滴渗搬讲])紧", r"在\1"),
    # 叫极都唔应, 拍极门都冇人应: however he is called
    (r"([叫拍摇推喊打敲拉])极([门人他她])?都", r"怎么\1\2都"),
    (r"([紫青白])晒", r"发\1"),                               # 面紫晒: the face gone purple
    (r"([满走用卖烂湿红黑完断])晒(?![太衫衣被])", r"\1了"),   # 塞满晒, 红晒: all, done
    (r"面(?=[紫青白黄])", "脸"),                             # 面青青
    (r"(?<=[一两几大细])旧(?=[一两几大细石砖木铁肉水])", "块"),   # 一大舊石屎 (嚿 written 舊)
    (r"(?<![a-z])(?i:lift)(?![a-z])", "电梯"), (r"(?<![A-Za-z])BB(?![A-Za-z])", "婴儿"),
    (r"(?<![a-z])(?i:van)(?![a-z])", "面包车"),                 # 架van, 货van
    (r"(?<![a-z])(?i:gas)(?![a-z])", "煤气"),                  # 好大阵gas味
    (r"(?<!喇)喇(?![叭嘛])", "了"),                           # 搵到喇; 喇叭 stays
    (r"([冲走行爬跑跳钻闯])了入(?![口门场学伙])", r"\1进了"),   # 冲咗入屋邨
    (r"(?<=[钱款数字名])先(?=(?:可以|得|准|俾|畀|给)?(?:走|离开|出去|回))", "才"),  # 交钱先可以走
    (r"(?<=[钱款块万])先(?=放)", "才"),                       # 攞五万蚊先放人
    (r"(?<=[0-9一二三四五六七八九十百千万两几])蚊", "块"),
    (r"(?<=\d)定(?=\d|打)", "还是"),                           # 打120定110
    # 食 and 饮 as verbs (食咗, 要食, 冇饮); 食品, 食道, 餐饮, 饮料 stay
    (r"食(?=[了紧晒过完不得埋返])|(?<=[要想不有])食(?![品堂物粮材用量欲谱疗客盐醋道])", "吃"),
    (r"饮(?=[了紧晒过完不得埋返酒醉])|(?<=[要想不有去])饮(?![料食品用片水机])", "喝"),
    # wages withheld (拖人工, 冇人工); 转人工, 人工智能, 人工呼吸 stay
    (r"(?<=[拖欠扣发加没有的些])人工(?!智能|岛|湖|呼吸|降雨|售|核|客服|服务|费|成本|操作)", "工资"),
    (r"拎(?=[刀棍枪铁斧])", "拿"), (r"揸(?=得?车|去|走)", "开"),
    (r"(?<![热吵胡别打又])闹(?=[我他她你])", "骂"),          # 闹我 is scolding me; 热闹 stays
    (r"(?<=[，,])话(?=[系是要他她我你不没会已])", "说"),      # "，话系胶喉老化"; not 电话
    # X到 is X得 where it says how much (嘈到我想跳楼, 闷到想死: driven to say it)
    (r"(?<=[吵气烦闷累忙热笑惊饿])到(?=[我人都想要喘说])", "得"),
    (r"不会应(?![该付对门酬])", "没反应"),                    # 唔识应; not 唔识应该, 应门
    (r"躺了(?![在地床上下])", "睡着了"),                      # 佢瞓咗; not 瞓咗喺地下
    (r"车了([^，。,]{0,4})去医院", r"送了\1去医院"),          # 车咗佢去医院
    (r"天花(?![板乱病])", "天花板"), (r"(?<![灭救防消])火水", "煤油"),
    (r"好彩(?!头)", "幸好"), (r"的士(?![兵气官])", "出租车"), (r"郁(?![闷金积结葱郁])", "动"),
    (_NOT_A_PLACE + r"边度", "哪里"),
    (_NOT_A_PLACE + r"边个", "谁"),
    (_NOT_A_PLACE + r"边([户间架条位只])", r"哪\1"),
    (r"([问看试等说讲听])吓", r"\1下"),                     # 问吓; not 吓一跳
))


def _mandarin(text: str) -> str:
    text = _CANTONESE_WORD.sub(lambda m: _CANTONESE_WORDS[m.group(0)], text)
    for pattern, mandarin in _CANTONESE_RULES:
        text = pattern.sub(mandarin, text)
    return text


# --- pinyin typed without a Chinese input method -----------------------------------------------

# A caller with no Chinese input method at hand (a foreign resident's phone, a kiosk, a form that
# takes ASCII only) types the sounds: "lu deng huai le san tian le", "wojia zhaohuole", "wǒ bèi
# piàn le". As written the model half knew such text (the held-out set typed so: 57 % placed, 345
# of 754 emergencies missed) and only a few danger cues had a pinyin form. It is read as the
# Chinese words it spells, the most likely ones for the whole text by a table of words by their
# pinyin that the model is built with (``recommender.pinyin_table``), each homophone weighed by
# the word before it as the corpus says them.
_TONED = str.maketrans("āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹ", "aaaaeeeeiiiioooouuuuvvvvvnnn")
# Letters, digits, spaces and the punctuation of either keyboard (a phone's input method may
# give Chinese punctuation while its letters stay Latin).
_PINYIN_TEXT = re.compile(r"[a-zv0-9\s,.!?;:'\"()\-，。！？、；：…—–‘’“”（）]+")
_SEPARATOR = r"[\s'’\-]+"               # between syllables: a space, an apostrophe (xi'an), a hyphen
_PINYIN_RUN = re.compile(rf"[a-zv]+(?:{_SEPARATOR}[a-zv]+)*")
_TONE_NUMBER = re.compile(r"(?<=[a-zv])[1-5](?![0-9])")        # "wo3 jia1"
_PUNCT_CN = str.maketrans({",": "，", ".": "。", "!": "！", "?": "？", ";": "；", ":": "："})
# Each word costs this much beyond its log-probability: fewer, longer words are likelier than
# the same sounds as single characters (``recommender.CORPUS_WORD_WEIGHT`` for how it was set).
_WORD_COST = 1.0
# Readings kept of the letters before a word (``PinyinTable.read``).
_BEAM = 8
# A word followed by words fewer times than this says nothing of the next one: one 一家人没 in
# the corpus read "yi jia ren mei qi zhong du le" 一家人没其中堵了, not 煤气中毒.
_CONTEXT_MIN = 3
# What each pair of neighbours the corpus had gives up to the words never seen after the first.
_DISCOUNT = 0.75
# Syllables that make no word of a description on their own (interjections: 嗯, 呣, 哼): never
# what makes a token pinyin ("n", "m" would make "gun", "woman" pinyin).
_NOT_ALONE = frozenset({"n", "m", "ng", "hm", "hng"})
# Longer than any description typed so; past it the text is read as written (the reading's
# time grows with the text, on the event loop).
_PINYIN_LONGEST = 1000


class PinyinTable:
    """Words by their pinyin without tones (``"tiaolou"`` -> 跳楼, 条路), each with its
    log-probability, the likeliest first; ``follows``: for a word of the corpus, how often it
    was followed by any word and by each (``recommender.pinyin_table``), so that the words
    around a syllable choose among its homophones ("ta yao sha wo" 他要杀我, not 他要啥我).
    ``english``: the words of the corpus's English (and other Latin-script) descriptions, some
    of which are syllables too ("a gun", "police", "he ran")."""

    def __init__(self, words: dict[str, tuple[tuple[str, float], ...]],
                 english: frozenset[str] = frozenset(),
                 follows: dict[str, tuple[int, dict[str, int]]] | None = None):
        self.words = words
        self.english = english
        self.follows = follows or {}
        # For each word followed by others often enough: what followed it, 1 / how often, and
        # the weight of a word's own probability after it, plain and as a log. Interpolated
        # absolute discounting: P(w | p) = (count(p w) - d) / count(p) + d x (the number of
        # different words seen after p) / count(p) x P(w); a word seen once after a rare one
        # (它再, one of 13) counts for less than the 1/13 it would say alone.
        self._after: dict[str, tuple[dict[str, int], float, float, float]] = {}
        for previous, (total, after) in self.follows.items():
            if total < _CONTEXT_MIN or not after:
                continue
            weight = _DISCOUNT * len(after) / total
            self._after[previous] = (after, 1 / total, weight, math.log(weight))
        self.syllables = frozenset(k for k, found in words.items()
                                   if k not in _NOT_ALONE and any(len(w) == 1 for w, _ in found))
        self.longest = max(map(len, words), default=0)

    def to_text(self) -> tuple[str, str]:
        """The words and what follows what as two texts, a line a key ("dajia\t大家 -9.1\t打架
        -10.3") and a line a word ("在\t3681\t打 19\t家 250"): one JSON string each. As JSON
        objects they made the model's JSON take 0.22 s to parse, not 0.06, all of it holding the
        GIL and so the event loop of a service loading it; ``from_text`` splits them in Python,
        between whose lines the loop runs."""
        if any(not w or any(c.isspace() for c in w)
               for found in self.words.values() for w, _ in found):
            raise ValueError("a word with a space cannot be kept as text")
        words = "\n".join(k + "".join(f"\t{w} {lp}" for w, lp in found)
                          for k, found in self.words.items())
        follows = "\n".join(f"{w}\t{total}" + "".join(f"\t{n} {c}" for n, c in after.items())
                            for w, (total, after) in self.follows.items())
        return words, follows

    @classmethod
    def from_text(cls, words: str, english: frozenset[str], follows: str) -> "PinyinTable":
        table: dict[str, tuple[tuple[str, float], ...]] = {}
        for line in words.splitlines():
            key, *found = line.split("\t")
            table[key] = tuple((w, float(lp)) for w, lp in map(str.split, found))
        after: dict[str, tuple[int, dict[str, int]]] = {}
        for line in follows.splitlines():
            word, total, *seen = line.split("\t")
            after[word] = (int(total), {n: int(c) for n, c in map(str.split, seen)})
        return cls(table, english, after)

    def spells(self, token: str) -> bool:
        """Is ``token`` syllables and nothing else ("zhaohuo" is; "help", "fire" are not)?"""
        ends = [True] + [False] * len(token)
        for i in range(1, len(token) + 1):
            ends[i] = any(ends[j] and token[j:i] in self.syllables
                          for j in range(max(0, i - 6), i))
        return ends[-1]

    def is_pinyin(self, tokens: list[str]) -> bool:
        """Every token syllables, and fewer than half of them words of the corpus's English
        ("you ren tiao lou" is pinyin; "a woman here", "one man on a lake" are English)."""
        return all(map(self.spells, tokens)) and \
            2 * sum(t in self.english for t in tokens) < len(tokens)

    def read(self, letters: str) -> str | None:
        """The likeliest words for a run of letters (spaces taken out), or None: the best path
        through the words its pieces spell, each word scored after the one before it (see
        ``__init__``; after a word followed too rarely in the corpus, its own log-probability).
        Of the readings of the letters before a word, the ``_BEAM`` best are tried (the time
        grows with them; no reading lost at 8)."""
        n = len(letters)
        # at[i]: the last word of a reading of letters[:i] -> (score, where it starts, the word
        # before it); one entry per word, as a word's key fixes where it starts.
        at: list[dict[str, tuple[float, int, str]]] = [{} for _ in range(n + 1)]
        at[0][""] = (0.0, 0, "")
        contexts: dict[int, list] = {}
        for i in range(1, n + 1):
            ending = at[i]
            for j in range(max(0, i - self.longest), i):
                if not at[j]:
                    continue
                found = self.words.get(letters[j:i])
                if found is None:
                    continue
                context = contexts.get(j)
                if context is None:
                    best_first = sorted(((score, prev) for prev, (score, _, _) in at[j].items()),
                                        reverse=True)[:_BEAM]
                    context = contexts[j] = [(score, prev, self._after.get(prev))
                                             for score, prev in best_first]
                for word, logp in found:
                    best, came_after = -math.inf, ""
                    for score, prev, seen in context:
                        if seen is None:
                            score += logp
                        else:
                            count = seen[0].get(word)
                            score += (logp + seen[3] if count is None else
                                      math.log((count - _DISCOUNT) * seen[1]
                                               + seen[2] * math.exp(logp)))
                        if score > best:
                            best, came_after = score, prev
                    best -= _WORD_COST
                    if word not in ending or best > ending[word][0]:
                        ending[word] = (best, j, came_after)
        if not at[n]:
            return None
        out, i = [], n
        word = max(at[n], key=lambda w: at[n][w][0])
        while i > 0:
            _, j, previous = at[i][word]
            out.append(word)
            i, word = j, previous
        return "".join(reversed(out))


def from_pinyin(text: str, table: PinyinTable) -> str | None:
    """``text`` read as the Chinese it spells in pinyin, or None when it is not pinyin: any
    character but letters, digits and punctuation, a word no syllables make ("help", "fire",
    "the"), or half its words the corpus's English ("a gun", "police"): such text stays as
    written. Tone marks (composed or not), tone numbers ("wo3") and ü ("lǚ", "lv") as typed;
    digits kept, punctuation as Chinese punctuation."""
    if len(text) > _PINYIN_LONGEST:
        return None
    lowered = _TONE_NUMBER.sub("", unicodedata.normalize("NFC", text).lower().translate(_TONED))
    if not _PINYIN_TEXT.fullmatch(lowered):
        return None
    tokens = re.findall(r"[a-zv]+", lowered)
    if sum(map(len, tokens)) < 4 or not table.is_pinyin(tokens):
        return None
    pieces, at = [], 0
    for run in _PINYIN_RUN.finditer(lowered):
        words = table.read(re.sub(_SEPARATOR, "", run.group()))
        if words is None:
            return None
        pieces += [_between(lowered[at:run.start()]), words]
        at = run.end()
    pieces.append(_between(lowered[at:]))
    return "".join(pieces)


def _between(text: str) -> str:
    return re.sub(r"\s+", "", text).translate(_PUNCT_CN)
