"""The matter recommender (R14): the corpus, the exported model, the emergency judgement, and the
answers a caller's ordinary words get. Its accuracy on unseen descriptions is measured by
``make bench`` (bench/recommender.py), not asserted here."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import pytest

from conftest import ROOT
from hotline_link import embedding, reading, recommender
from hotline_link.settings import load_catalog
from transfer import classifier, danger
from transfer.catalog import CONSULTATION, NEAREST, UNCLEAR, recommend

CATALOG = load_catalog()


@pytest.fixture(scope="module")
def engine():
    rec = recommender.Recommender(CATALOG, train_if_missing=True).load_now()
    assert rec.model is not None, rec.error
    return rec


def test_the_corpus_covers_every_category_and_consultation_with_dozens_of_callers_words():
    samples = recommender.read_corpus(CATALOG)
    per = {}
    for s in samples:
        per.setdefault(s.label, []).append(s)
    assert set(per) == set(CATALOG.by_code) | {CONSULTATION, UNCLEAR}
    assert min(len(v) for v in per.values()) >= 40
    held = [s for s in samples if s.held_out]
    assert 0.1 < len(held) / len(samples) < 0.3
    assert sum(s.emergency for s in held) >= 10


def test_a_bad_corpus_line_is_named(tmp_path):
    (tmp_path / "road_traffic.tsv").write_text("emergency\ttext\n0\t红绿灯坏了\n2\t不对\n0\t红绿灯坏了\n")
    (tmp_path / "no_such.tsv").write_text("emergency\ttext\n")
    with pytest.raises(recommender.CorpusError) as info:
        recommender.read_corpus(CATALOG, tmp_path)
    assert info.value.problems == [
        "no_such.tsv: 'no_such' is neither a catalog code nor 'consultation' nor 'unclear'",
        "road_traffic.tsv:3: expected '0|1<TAB>text'",
        "road_traffic.tsv:4: the same text as road_traffic.tsv:2",
    ]


def _read(texts: list[str], meaning: bool):
    """What scikit-learn reads of ``texts``: the TF-IDF rows, the embeddings beside them."""
    def rows(vec, more: list[str]):
        x = vec.transform([recommender.features(t) for t in more])
        return recommender._beside(x, embedding.matrix(more)) if meaning else x
    return ([recommender.features(t) for t in texts],
            embedding.matrix(texts) if meaning else None, rows)


@pytest.mark.parametrize("meaning", [False, True], ids=["words", "words-and-embedding"])
def test_the_exported_model_answers_exactly_as_scikit_learn(meaning, tmp_path, monkeypatch):
    monkeypatch.setenv("HOTLINE_EMBEDDING_CACHE", str(tmp_path))
    texts = ["路灯坏了", "路灯不亮", "红绿灯坏了", "红绿灯不亮了", "井盖没了", "井盖被偷了",
             "被骗了钱", "网上被骗", "工资没发", "老板欠工资"]
    labels = ["a", "a", "b", "b", "a", "a", "c", "c", "d", "d"]
    docs, dense, rows = _read(texts, meaning)
    for y in (labels, ["1" if lab in "bc" else "0" for lab in labels]):
        vec, lr = recommender.fit(docs, y, recommender.CATEGORY_C, dense)
        model = classifier.LinearModel.from_json(recommender.export(vec, lr).to_json())
        assert model.dense_dim == (embedding.DIM if meaning else 0)
        for text in ("路灯又坏了", "欠了三个月工资", "红绿灯", "完全无关的话"):
            want = dict(zip(lr.classes_, lr.predict_proba(rows(vec, [text]))[0]))
            got = model.probabilities(recommender.features(text),
                                      embedding.vector(text) if meaning else None)
            assert set(got) == set(want)
            for label in want:
                assert got[label] == pytest.approx(want[label], abs=1e-4)


@pytest.mark.parametrize("meaning", [False, True], ids=["words", "words-and-embedding"])
def test_the_exported_category_model_is_the_svm_at_its_temperature(meaning, tmp_path,
                                                                    monkeypatch):
    monkeypatch.setenv("HOTLINE_EMBEDDING_CACHE", str(tmp_path))
    texts = ["路灯坏了", "路灯不亮", "路灯一闪一闪", "红绿灯坏了", "红绿灯不亮了", "红绿灯乱跳",
             "被骗了钱", "网上被骗", "刷单被骗", "工资没发", "老板欠工资", "拖欠工资"]
    labels = ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["d"] * 3
    docs, dense, rows = _read(texts, meaning)
    vec, svm, temperature = recommender.fit_category(docs, labels, recommender.CATEGORY_C, dense)
    # the temperature is fitted, not a constant: a softmax of bare margins would be nearly flat
    assert temperature > 1
    model = classifier.LinearModel.from_json(recommender.export(vec, svm, temperature).to_json())

    def answer(text: str) -> dict[str, float]:
        return model.probabilities(recommender.features(text),
                                   embedding.vector(text) if meaning else None)

    for text in ("路灯又坏了", "欠了三个月工资", "红绿灯", "完全无关的话"):
        scores = svm.decision_function(rows(vec, [text]))[0] * temperature
        weights = [math.exp(v - max(scores)) for v in scores]
        want = {label: w / sum(weights) for label, w in zip(svm.classes_, weights)}
        got = answer(text)
        assert set(got) == set(want)
        for label in want:
            assert got[label] == pytest.approx(want[label], abs=1e-4)
    assert max(answer("老板欠工资不给").items(), key=lambda kv: kv[1])[0] == "d"


def test_a_model_that_reads_embeddings_refuses_to_answer_without_one():
    model = classifier.LinearModel.of(("0", "1"), {"w:火": (1.0, (0.0, 2.0))}, (0.0, -1.0),
                                      [[0.0] * 3, [0.5, -0.5, 1.0]])
    assert model.dense_dim == 3
    with pytest.raises(ValueError, match="given none"):
        model.probabilities(["w:火"])
    with pytest.raises(ValueError, match="embedding of 2 numbers"):
        model.probabilities(["w:火"], [1.0, 0.0])
    # the score is the words' plus the embedding's: 2 - 1 + (0.5 - 0.5 + 1) = 2 for "1"
    got = model.probabilities(["w:火"], [1.0, 1.0, 1.0])
    assert got["1"] == pytest.approx(1 / (1 + math.exp(-2)))
    assert classifier.LinearModel.from_json(model.to_json()) == model


def test_the_embedding_cache_gives_what_the_encoder_gives_and_keeps_it(tmp_path):
    texts = ["孩子掉河里了", "小孩落水了", "路灯不亮", "孩子掉河里了"]
    first = embedding.matrix(texts, tmp_path)
    assert first.shape == (4, embedding.DIM)
    assert list(first[1]) == pytest.approx(list(embedding.vector("小孩落水了")), abs=1e-6)
    assert list(first[0]) == list(first[3])
    # unit length, and two ways of telling one thing nearer than two different things
    assert float(first[0] @ first[0]) == pytest.approx(1.0, abs=1e-3)
    assert float(first[0] @ first[1]) > float(first[0] @ first[2])
    (saved,) = tmp_path.glob("*.npz")
    assert embedding.engine() in saved.name
    assert (embedding.matrix(texts[:2], tmp_path) == first[:2]).all()
    saved.write_bytes(b"damaged")           # embedded again, and kept again
    assert (embedding.matrix(texts, tmp_path) == first).all()


def test_remembered_embeddings_are_the_encoders_and_are_kept_for_the_next_run(tmp_path,
                                                                            monkeypatch):
    monkeypatch.setattr(embedding, "_kept", None)    # the session's own, back after the test
    monkeypatch.setattr(embedding, "_added", 0)
    embedding.remember(tmp_path)
    try:
        got = embedding.vector("楼下有人打架")
        assert embedding.vector("楼下有人打架") == got
    finally:
        embedding.forget(tmp_path)
    assert embedding.vector("楼下有人打架") == got        # not remembered: embedded again
    assert list(embedding.matrix(["楼下有人打架"], tmp_path)[0]) == list(got)


@pytest.mark.parametrize("text, emergency", [
    ("我家厨房一股煤气味", True),
    ("孩子掉进河里了", True),
    ("有个人站在楼顶边上说要跳下去", True),
    ("我爸有老年痴呆，早上出门到现在没回家", True),
    ("两伙人在烧烤店门口打起来了", True),
    ("电线断了掉在人行道上，还在冒火花", True),
    ("没有人受伤，就是井盖没了", False),
    ("莫得人受伤，就是井盖没了", False),            # Sichuan's 没有
    ("巷子口冒黑水，莫得人管，有人掉下去了", True),   # 莫得人管: nobody sees to it
    ("不是漏气，就是燃气费扣多了", False),
    ("上周楼道着过火，早就灭了，想问问物业怎么赔", False),
    ("万一家里着火了应该怎么办", False),
    ("孩子走丢了，后来已经找到了，谢谢", False),
    ("没人管这事，但是有人受伤了", True),
    ("上个月有人冒充社保局打电话，我给了验证码，今天才看到账上少了钱", False),
    ("刷单已经转了三万了，对方说还要再转五万才能提现，我正准备转", True),
    ("电梯卡在七楼和八楼中间了，里头关着四个人", True),
    ("菜市场后面有人偷偷卖野鸟，关在笼子里", False),
    ("我家厨房燃气灶关了还有味，越来越大", True),
    ("灶上火苗特别小，烧壶水要半个钟头", False),
    ("前两天家里煤气泄漏过一次，人没事，想问责任怎么认定", False),
    ("燃气表上显示没气了，营业厅说换表要等一周", False),
    ("老人倒在楼道里，好像已经没气了", True),
    ("不危险，就是门口那片洼地一下雨就积水", False),
    ("烟囱冒黑烟", False),
    ("厂里烟囱旁边的棚子着火了", True),
    ("楼里着火了，人都撤了", True),                      # out, and still a fire
    ("来电人称水库水位已漫过坝顶，需紧急组织撤离", True),
    ("那条狗在广场上追着小孩咬", True),
    ("商场里大家都往外挤，楼梯口踩倒了好几个人", True),
    ("我爸现在在银行柜台非要给一个什么领导汇款，拦都拦不住，肯定是被骗了", True),
    ("刚才差点撞到行人，快派交警来", True),              # a near miss just now: live danger
    ("骑电动车经常颠得差点摔倒", False),
    ("有人在网上散布说水库要溃坝了", False),
    ("有人在河边烧垃圾，黑烟滚滚", False),
    ("被老板打伤了要打官司，想申请法律援助", False),
    ("小孩打进来就说我家着火了然后哈哈大笑挂断", False),
    ("刚才报警说孩子联系不上，现在撤销报警，他打电话回来了", False),
    # Threats: whoever made one is at large, so "he left" or "he said it yesterday" is no relief.
    ("有个人在饭馆说要去厂里放把火，说完就走了，听着不像开玩笑", True),
    ("前天扬言要报复社会的那个人，刚才又发了条朋友圈说到地方了", True),
    ("我舅舅刚打电话说活够了要喝农药", True),
    ("电话里她说让我照顾好自己，然后就关机了", True),
    ("钓鱼的大叔被大鱼拽下水了", True),
    ("一个大爷掉进排水沟里，腿好像摔断了，爬不出来", True),
    ("高架桥上有个老人在步行，车开得飞快", True),
    ("门口有个说是社保局的，要给我办什么认证收三百块，我没给，他还没走", True),
    ("有人抄起凳子要砸老板", True),
    # Words of danger about something else.
    ("村里有人私自杀猪卖肉，没检疫", False),
    ("井盖缺了一块，邻居拿砖头垫上了", False),
    ("以为是着火了，出去一看是隔壁在熏腊肉", False),
    ("买的除草剂把菜苗全烧死了，店家不认账", False),
    ("老树空心了，想请人看看要不要砍掉", False),
    ("我母亲走失后已被找回，想申请临时救助", False),
    ("环卫工把落叶堆起来点火烧，烟呛人", False),
    ("新开的农药店有没有许可证", False),
    # The body failing: a stroke, choking, the heart; an overdose mistaken for sweets.
    ("我奶奶吃饭时突然嘴歪了，一边胳膊抬不起来", True),
    ("孩子吃果冻噎住了，脸都憋紫了", True),
    ("我爸胸口疼得直冒汗，站不住了", True),
    ("小孙子把安眠药当糖吃了，吃了好几片", True),
    ("一群马蜂追着放学的孩子蛰", True),
    ("有个人在找我，我躲在衣柜里不敢出声", True),
    ("钥匙锁家里了，屋里没人，想找个开锁的", False),
    ("早高峰这个路口天天堵死", False),
    ("社区有没有防走失手环可以领", False),
    ("外卖的鸡腿里全是血水，根本没熟", False),
    ("大厅里有个没人要的旅行箱，一直滴答滴答的", True),
    ("他从怀里掏出一把刀，说谁过来就捅谁", True),
    ("放羊的被雷劈了，趴在坡上不动", True),
    ("地震一样，天花板在掉渣，咔咔地响", True),
    ("我家狗爬到车顶上了，下不来", False),
    ("学校说今天冲进教室的人原来是演练的，想问该不该提前告诉家长", False),
    ("如果遇到有人撬门，是先打110吗", False),
    # Danger told by what the caller sees, not by its name.
    ("屋里一股臭鸡蛋味，我妈歪在地上，怎么叫都不睁眼", True),
    ("工友的袖子被机器卷进去了，机器关不掉", True),
    ("我们的船进水了，水快到腰了", True),
    ("他拿铁锹拍她，她已经不动了", True),
    ("下大雨路口积水到膝盖", False),
    ("老伴瘫在床上好几年了，想申请补助", False),
    ("桥洞底下有人在打牌", False),
    ("前几天吃坏了上吐下泻，现在人都好了，想投诉饭店", False),
    # Voices a keyword list does not expect: a disguised call, a soft farewell, a sham official.
    ("我要一份炒饭……他就在我旁边，我说话不方便，地址是幸福小区3栋", True),
    ("我在天台上吹风呢，往下一跳就清净了，你们别劝我", True),
    ("我妈说有个警察让她去宾馆开房间配合调查，不准告诉家里人", True),
    ("我老婆怀孕八个月，肚子疼得厉害，下面有水出来", True),
    ("公厕脏得下不去脚", False),
    ("刚看了一部警匪片，里面有人被绑架，想问问现实中该打哪个电话", False),
    # Danger words of another time, a lesson, a rumour, a plan.
    ("上次我家孩子走丢了，民警帮了大忙，想表扬一下", False),
    ("想报个急救培训班，学怎么处理流血受伤", False),
    ("群里都在传有人贩子抢小孩，是真的吗", False),
    ("工友们在群里说要去堵路讨工资", False),
    ("科目一有道题问车辆起火先干啥", False),
    ("仓库里噼里啪啦地响，窗户都映红了", True),
    # An animal's own trouble, in a sentence that names no person, is an animal matter.
    ("小区有只流浪猫钻进车发动机舱卡住了，一直叫，出不来", False),
    ("鸽子卡在空调外机里出不来", False),
    ("野狗被车撞了躺在路中间", False),
    ("两条狗打架咬伤了路过的小孩", True),
    ("狗卡在铁栏杆里，孩子去拽它，手也卡在里面了", True),
    # A meter that does not respond is a supply matter; a person who does not is not.
    ("燃气卡充了钱，插上表没反应", False),
    ("我爸叫了半天没反应", True),
    ("我妈一个人在家，打她手机没反应，敲门也没人应", True),
    ("取款机插了卡没反应，卡也退不出来", False),
    ("干活受伤了老板不给赔，也不签合同，这事找谁管", False),
    # Kinds the read probe sets C, G and I showed once the emergency model no longer caught them.
    ("有个男的在网上发视频说要开车去撞人，就今天，在步行街", True),
    ("衣服被旋耕机卷入，人被压在机器下", True),
    ("讨薪的人说不给钱就把楼点了，身上浇了汽油", True),
    ("他喝了酒说要去江边一了百了，出门半小时了", True),
    ("一根电线断落在菜市场门口的水坑里，人还在旁边走", True),
    ("食堂午饭后三十多个工人相继呕吐腹痛", True),
    ("女儿发语音说司机把车往郊外开，不停车，车门锁了", True),
    ("动物园一只黑熊从围栏翻出来了", True),
    ("公交车到站不停车，司机开得飞快", False),
    # From cross-validation misses on the training part (batch 9's voices).
    ("电梯困人", True),
    ("矿上出事了，井下有人没出来", True),
    ("我妈七十九了，今早坐公交出门后失联了", True),
    ("网上买理财被骗了五万，平台客服失联", False),
    ("春游回来点名，一个二年级的学生没归队", True),
    ("候车室有个老人神志不清，说不出住址", True),
    ("幼儿园放学一个孩子被不明身份的人接走了，家长说没委托别人", True),
    ("老大爷在公园坐到天黑，问他住哪他光笑", True),
    ("会计按老板微信转了三十万，老板说没发过，钱刚转出去十分钟，能不能拦", True),
    ("我还在跟对方通话，他说再转两万就能把之前的钱退回来", True),
    ("敲门无回应，独居老人好几天没出门了", True),
    # "晕过去" holds "过去" (in the past): the cue's own words are not its time.
    ("外婆晕过去了", True),
    ("我爸突然昏过去了", True),
    ("那天他晕过去了，现在好了", False),
    ("没拴绳的狗追着小孩咬，孩子胳膊上已经见红了", True),
    # Negators that negate nothing: a symptom, "unexpectedly"; a payment going out now.
    ("我妈不太舒服晕倒了", True),
    ("没想到他真的跳楼了", True),
    ("我不会用微信，正在转账给他", True),
    ("不太严重，就擦破点皮", False),
    # "以后" after an event is after it, not the future; "之前还好好的" contrasts with now; a past
    # clause whose state goes on is now.
    ("下班以后发现家里着火了", True),
    ("出门以后孩子就不见了", True),
    ("以后万一着火了怎么办", False),
    ("我爸之前还好好的突然晕倒了", True),
    ("当时就倒地不起了，现在还没醒", True),
    ("上个月出过车祸，到现在还没赔", False),
    ("去年他突然晕倒过一次，想问问医保", False),
    # A look-alike's frame (film, game, drill, leaflet) does not clear the real world breaking in.
    ("玩游戏的时候听见楼上有人喊救命", True),
    ("看电影出来发现有人拿刀砍人", True),
    ("我在玩手机游戏，隔壁突然着火了", True),
    ("搞完演练回来发现仓库真的着火了", True),
    ("宣传单上写着注意防火，现在楼下着火了", True),
    ("刚才看了个电影，里面有人拿刀砍人，吓死了", False),
    ("剧组在小区门口拍爆炸戏，一晚上都是炮仗声，能管吗", False),
    # "还好没下雨" is no "no harm done".
    ("墙塌了底下压着人，还好没下雨", True),
    ("墙塌了，还好没砸到人", False),
    # "以为是开玩笑" says it was real; "是不是漏了" asks, it does not clear.
    ("他说他喝了农药，我以为是开玩笑", True),
    ("煤气味很大，是不是漏了啊", True),
    ("燃气公司来查过了，不是漏气", False),
    ("我没事，是我同事被车撞了", True),
    ("路灯杆被车撞弯了", False),
    ("孩子发高烧抽筋了", True),
    ("我家进小偷了，人还在里面", True),
    ("上个礼拜家里进了小偷，想问下案子有没有进展", False),
    ("物业不管小区进贼", False),
    ("我被人跟踪了，不敢回家", True),
    ("我闻到一股焦味，好像是从配电箱那边来的", True),
    ("船翻了", True),
    ("一群人在KTV门口打群架", True),
    ("家里的燃气报警器一直在响", True),
    ("一辆大货车翻在路上，油漏了一地", True),
    ("我家天花板在往下掉水泥块", True),
    ("家里水管爆了，水漫到插座了", True),
    ("一个男的在公交车上猥亵女孩，现在还在车上", True),
    ("去年被猥亵的案子想问进展", False),
    ("我在高速上，前面两辆车撞了，有人被甩出来了", True),
    ("我妈糖尿病，现在昏昏沉沉的叫不太醒", True),
    ("有人在天桥上要往下跳", True),
    ("店里有人闹事，把东西都砸了", True),
    ("楼下装修把承重墙砸了个大洞", False),
    ("有个人倒在血泊里", True),
    ("有人从楼上往下扔砖头，砸到人了", True),
    ("我被人砍了一刀", True),
    ("河堤上的柳树被人砍了好几棵", False),
    ("马路上有个井盖没了，刚才有个骑电动车的掉进去了", True),
    ("楼下那辆车里有个孩子在哭，车门锁着，大人不在", True),
    ("我爸在洗澡，半天没动静，门反锁了", True),
    ("商场里人挤人，有人被踩了", True),
    ("小孩把头卡在栏杆里了", True),
    ("电梯突然往下掉，停在两层中间", True),
    ("街上有人开车横冲直撞", True),
    ("有人往河里倒了一桶东西，鱼都翻白了，下游就是取水口", True),
    ("孩子手被绞肉机夹住了", True),
    ("电梯老是停在两层中间，物业修了好几次了，现在没人被困", False),
    ("小区门口天天有人闹事吗？我想问问有没有保安", False),
    ("商场里的扶梯夹了孩子的鞋，孩子没事", False),
    ("孩子被开水烫了一大片", True),
    ("去年烫伤的医药费能报销吗", False),
    # Batch 10's indirect emergencies (cross-validation misses on the training part).
    ("门被踹开了", True),
    ("湖里有人扑腾", True),
    ("停电了，我爸在家用呼吸机，备用电池只剩半小时了", True),
    ("小岛上困了五六个学生，水一直在涨", True),
    ("收到彩信，女儿被蒙着眼睛绑在椅子上，对方让我准备钱", True),
    ("大巴司机一直打瞌睡，车在高速上往护栏蹭", True),
    ("卡里的钱正一笔一笔被扣，短信响个不停", True),
    ("候车厅有个黑包放了一上午，里面嘀嗒嘀嗒响", True),
    ("楼上装修天天早上七点就开始砸墙", False),
    ("在高铁站行李箱被人拖走了，箱子里有证件", False),
    ("路上一长条黑油，估计是罐车漏的，目前还没出事", False),
    ("楼上装修工人晚上在屋里加班打磨，滋滋响到十一点", False),
    # Words that only look like danger (cross-validation's false emergencies on the training
    # part), and the dog attack one of those words had caught by accident.
    ("热水器老打不着火，厂家不管", False),
    ("商场大喇叭天天喊清仓跳楼价", False),
    ("天桥上的扶手断了", False),
    ("老杨树让雷劈了，斜在路上", False),
    ("快递网点倒闭了，押金不退", False),
    ("驾驶证被收走至今未归还", False),
    ("草皮都被车碾烂了", False),
    ("拿我们热线打赌，打了一整晚", False),
    ("救火用的水桩子锈死了，真着火了能用不", False),
    ("锅炉房烧煤冒黑烟", False),
    ("有辆面包车在小区出口停了三天了，把路堵了一半", False),
    ("来电人谎称家中着火，经核实无此事", False),
    ("着火啦！骗你的", False),
    ("被狗咬伤了手，已自行就医，要求处理狗主人", False),
    ("楼下那条狗把快递员扑倒了，还在咬，没人敢上去拉", True),
    ("老人被车碾了腿", True),
    ("对方谎称是公安局的，让我把钱转到安全账户，我正在转", True),
    ("几十个村民把路堵了，车都停着过不去", True),
    # Batch 11's cross-validation misses and probe set M's, after its first reading.
    ("滚水喷了我妈一身，胳膊上全是泡", True),
    ("困电梯里了，好闷", True),
    ("搅拌机里有人", True),
    ("小卖部被人抢了", True),
    ("KTV门口一群人混战", True),
    ("小孙子在公园玩着玩着就没影了", True),
    ("俺家老汉上山割漆，到这会儿没个人影", True),
    ("幼儿园老师说孩子被一个亲戚接走了，可我们家今天谁都没去接", True),
    ("小孩爬到窗外的空调架子上了", True),
    ("我在那个窝点的厕所里，他们不让我们走", True),
    ("还剩四十万没转，他现在还在视频里催我", True),
    ("喂，我屋企楼下有架车撞咗个后生仔，佢瞓喺度唔郁", True),
    ("小区里一条狗疯了似的，口吐白沫到处乱窜", True),
    ("幼儿园十几个孩子肚子疼，家长正往医院送", True),
    ("没执照的烟花作坊门口堆着鞭炮，有人蹲门口抽烟", True),
    ("收了我两万就没影了", False),
    ("草坪被踩秃了", False),
    ("电池鼓包了，差点着火，幸亏发现得早", False),
    ("燃气泄漏了应该先打119还是打燃气公司", False),
    ("有人被杀了！在月球上，哈哈", False),
    ("刚才说楼上着火，是我看错了，人家在烤串", False),
    ("工地上百来号工人说再讨不到工资就一起去堵高速", False),
    # Emergencies the emergency model alone caught, with little margin (cross-validation on the
    # training part, the incident table): a retrained model could lose them, so cues name them.
    ("插线板着了", True),
    ("爸倒了，不动", True),
    ("娃丢了", True),
    ("我家孩子丢了自行车，想查监控", False),
    ("我奶奶去赶集没回来", True),
    ("江边护栏外头站了个人，盯着水看了好久了", True),
    ("刚才\"轰\"的一声整栋楼都震了，对面那家窗户全没了", True),
    ("楼道有人拿根铁丝在捅对门锁眼", True),
    ("砰砰两声，有人倒了", True),
    ("他在直播间说今晚就结束自己", True),
    ("零下十几度，高速匝道边上睡着个人，就穿个单褂", True),
    ("水库坝子底下往外冒水，越冒越浑，坝底下就是村子", True),
    ("第五次打来说孩子丢了，每回孩子都在家，他说就是想试试你们", False),
    # The medical and rescue table's misses at its first reading.
    ("我的朋友，他不能呼吸好，胸里面很多声音", True),
    ("我爷爷坐沙发上怎么叫都只是哼哼，衣服湿透了", True),
    ("跑马拉松的一个人歪倒在护栏上，嘴里胡说八道", True),
    ("她肚子才八个月，刚才裤子湿了一大片，肚子一阵一阵疼", True),
    ("鼻子淌红的，捏不住", True),
    ("疼得满地打滚一身汗", True),
    ("我个仔碰翻咗个煲，成身淋晒滚汤，皮都起晒泡", True),
    ("工友手被切割机带了一下，口子能看见骨头", True),
    ("吃了野菌全家都在吐", True),
    ("一根线耷拉在人行道上，啪啪地闪蓝光", True),
    ("吃完那家烧烤回来，全家都拉肚子，要求赔偿", False),
    ("限速的那块牌子歪倒在路边了", False),
    ("想给老人装几个防跌倒扶手", False),
    ("孩子吞了一块口香糖，医生说没事", False),
    ("家里剩的除草剂是危险废物，在哪里回收", False),
    ("想买一个一氧化碳报警器", False),
    # False emergencies of 12345's categories under cross-validation (each one a platform wrong).
    ("施工单位把门口的路挖断了，老人坐轮椅出不去", False),
    ("被狗咬了想打官司，能申请法律援助吗", False),
    ("水泥板碎了，电动车压上去一翘一翘的", False),
    ("货车掉了一路钢管，车压上去就弹起来", True),
    ("加油站今天关着门没人", False),
    ("屋里关着个人，一直在喊", True),
    # The 12345 complaints table's misses at its first reading, and its false emergencies.
    ("泵房的管子爆了，水灌进配电房，现在配电房里啪啪响，还有股焦糊味", True),
    ("消防通道长期被货物堵塞，现一楼电瓶车停放处冒黑烟", True),
    ("锅炉房天天冒黑烟", False),
    ("厨房里味挺大，我婆婆在里面做饭突然就坐地上了", True),
    ("老太太下化粪池去掏，现在人倒在里面了", True),
    ("他们挖断了一根燃气管，现在满街都是味", True),
    ("裂缝一下子变大，好几家窗玻璃自己崩碎了", True),
    ("雨水倒灌，地库内仍有人员坐在车内", True),
    ("大伯一个人住，昨天到现在电话打不通", True),
    ("我爸在家用呼吸机，停电的话有没有什么优先保障", False),
    ("灶具软管老化有漏气风险，已经换过了", False),
    ("刹车不灵摔了一跤，手擦破了已经包好了", False),
    ("挖机把我家院墙推倒了，已经过去半年，补偿还没谈下来", False),
    # The voices table's misses at its first reading: foreign residents above all (19 of 28).
    ("Excuse me, 我的朋友 fall down 从 bike，头 blood 很多，他不说话", True),
    ("My son 不见了! 五岁, blue T-shirt, 在 shopping mall", True),
    ("Wo de fangzi zhao huo le! jiu ming!", True),
    ("我的 roommate take too much pills, 她 breathing 很慢, 叫她 no answer", True),
    ("一只大狗 bite my daughter, 很深, blood 不停", True),
    ("有人打电话说 I am police, 要 transfer money now, 我 already 给了 5000, he want more", True),
    ("If 我家 fire, 我 call 119 or 110? Just asking", False),
    ("我 think 有 smoke 但是 no, 是 neighbor 做 BBQ, 没事", False),
    ("The street light is broken, 一个月了", False),
    ("我的 blood test 结果什么时候出来", False),
    ("I feel a bit tired, 想问社保的事", False),
    ("There is a faint smell 在楼道, 是垃圾", False),
    ("Can you help me find the bus to the airport", False),
    ("我的 card stuck in the ATM", False),
    ("Is this a non-emergency number?", False),
    ("大型犬无绳咬伤小孩，犬仍在小区游荡", True),
    ("你好，我订两份盒饭，送到仓库，一共五个人，他们有刀", True),
    ("我…说话…不清楚…半边…动不了", True),
    ("有个细路喺泳池遇溺啊，捞咗上嚟冇呼吸啊", True),
    ("我老公胸口疼疼得满头汗就是那个心心脏以前有病快叫就护车", True),
    ("刚才是我小孩乱打的电话，说家里着火是瞎说的", False),
    # The time and negation pairs' first reading.
    ("河边那个人没有落水，是在钓鱼", False),
    ("河边那个人落水了", True),
    ("两辆车追尾了，没有人受伤，等交警拍照", False),
    ("打架的已经被民警带走了，街上恢复正常了", False),
    ("来电人称楼顶欲跳楼男子已被劝下，家属已接走", False),
    ("群里有人转发说小区有人贩子，想问是不是谣言", False),
    ("隔壁整晚喊杀人了救命，敲门问了，原来是在打游戏开麦", False),
    ("拍戏的时候真的着火了", True),
    ("同学发消息说被绑架了，后来说是愚人节整我的", False),
    ("听说周六有一帮人约好要在公园打群架", False),
    ("来电人称先前报的孩子失踪系误会，孩子在奶奶家，已联系上", False),
    ("先前说孩子在奶奶家是误会，奶奶家没有，孩子至今下落不明", True),
    ("两名男子骗走存折里的钱，二人下落不明，要求立案", False),
    ("树要倒了，没人在下面", False),
    ("国道上油桶散了一地，是三轮车翻了人没事，车都在急刹", True),
    ("手指划了个小口子，出了几滴血，贴了创可贴", False),
    ("广场上几百人在跳舞，挺热闹", False),
    ("要是消防再不来人，火就烧到二楼了", True),
    ("拍电影的那条街上，一个群演被真刀划伤了，血流了一地", True),
    ("关了阀门味道还是越来越大", True),
    ("墙上的裂缝一天宽了好几厘米，还在掉灰", True),
    # A week's log, first reading.
    ("电梯卡在六楼和七楼中间，现在好了，我婆婆在里面半个钟头了，刚才说胸口闷", True),
    ("有人拿我的视频威胁我，让我十分钟内转两万", True),
    ("溶洞里涨水了，出口已经被水淹了", True),
    ("学员上来就喊不出声，口鼻冒血沫", True),
    ("滑雪场发生雪崩，我们同伴被埋了", True),
    ("他们拿烟头烫他胳膊，还说要把他从三楼窗户扔下去", True),
    ("雨棚被烟头烫了好几个洞", False),
    ("又打来了，还是说要找市长，不转就骂娘", False),
    ("那头牛疯了，顶人，把老汉顶到沟里去了，还在追人", True),
    ("刚才街上有人举着枪追人，后来看见摄像机和导演了，是在拍戏", False),
    ("听到咚咚的巨响，还以为爆炸了，后来才知道是隔壁工地在打桩", False),
    ("刚才外面消防车一直在响，是哪里着火了？", False),
    ("听说旁边要建化工厂，大家都担心以后会爆炸", False),
    ("刚才是我打电话说着火了，是闹着玩的", False),
    ("我老公昨晚一夜没回家，刚才同事说他在单位加班睡着了，不用找了", False),
    # A reviewer's emergencies that this session's "it is over" and "a question" rules first set
    # aside: each rule now speaks of its own clause or of the cues before it, never of what lasts.
    ("楼里着火了，一个已经送医院了，还有人被困在里面出不来", True),
    ("我女儿失踪已经过去三天了，到现在还没找到", True),
    ("老人晕倒在路边叫不醒，已经联系上他家人了", True),
    ("孩子不见了，你们处理完毕了吗", True),
    ("邻居家着火了，火很大，是打119还是110？", True),
    ("Should I call 119 or 110? My neighbour's flat is on fire.", True),
    ("我儿子要跳楼我该怎么劝他", True),
    ("有人在楼顶要跳楼，真的假的你们快来", True),
    ("我奶奶突然昏死过去了", True),
    ("孩子有过敏吃了虾喘不上气", True),
    ("孩子没站稳掉河里了", True),
    ("后来发现不是放炮，是枪声，有人倒在地上", True),
    ("楼下吵闹原来是在打游戏，可是现在隔壁突然着火了", True),
    ("刚才轰的一声，不是打雷，是煤气罐炸了", True),
    ("他浑身抽搐跟羊癫疯似的", True),
    ("你们再不来的话人就没气了", True),
    ("楼道里煤气味很大有爆炸风险", True),
    ("我爸拿着医保卡去医院的路上晕倒了", True),
    ("今天星期六，我约了朋友在饭店吃饭，隔壁桌有人拿刀砍人", True),
    ("上百个工人围在公司门口，情绪激动，说再不发工资就不走了", True),
    ("有人假称是物业上门，现在在撬我家门", True),
    ("孩子们闹着玩，有个孩子掉进河里了", True),
    ("楼上的广告牌塌了砸中了行人，没人在管", True),
    ("老人被车撞了，躺着动不了，人没事吗？", True),
    ("孩子头磕破了流了很多血，我先用创可贴贴着", True),
    ("两个人在楼顶要跳楼，一个被劝下来了，另一个还在边上", True),
    ("河面冰快裂了几个孩子还在上面玩，非常危险", True),
    ("锅炉房的房间里浓烟滚滚看不见人", True),
    ("There is a gas leak in my kitchen.", True),
    ("My father collapsed and his lips are blue.", True),
    ("Someone broke into my apartment, he is still inside.", True),
    ("A car hit my son, he is lying on the road.", True),
    ("I want more details about my social insurance.", False),
    ("Thank you, goodbye.", False),
    ("This is not an emergency, I want to ask about my bill.", False),
    ("The door handle is broken.", False),
    ("I'm stuck in traffic, the bus is late.", False),
    ("My boss will fire me.", False),
    ("I got a mosquito bite.", False),
    ("存在折断坠落隐患，诉求移除", False),
    ("我刚才说桥上有人打架，其实没有，就想看看你们来得快不快", False),
    # A second review attacked every older rule the same way (a quarter of its texts here): each
    # rule now speaks of the cues before it or of its own clause, not of the whole text.
    ("我妈现在没事了，但我爸被压在下面出不来", True),
    ("我没跟你开玩笑，我老公拿刀砍人了", True),
    ("我的伤口已经处理好了，但是我朋友还昏迷着", True),
    ("楼道着火了，灯全灭了，什么都看不见", True),
    ("他拿着菜刀，抓住了我女儿", True),
    ("家里煤气味特别大，燃气公司上个月来查过了", True),
    ("撞车了，我没事，对方司机满头是血趴在方向盘上", True),
    ("他被砍伤了，头破了，看着人不多", True),
    ("楼要塌了，还没有人受伤，楼里还住着十几户人", True),
    ("我爸倒在地上叫不醒，刚才地址说错了，是3单元不是5单元", True),
    ("隔壁饭店着火了，原来是烧烤炉引燃了油烟管道", True),
    ("剧组有个演员从楼上摔下来了，流了好多血", True),
    ("新闻上说今天有台风，我家屋顶被掀了，我妈被压在下面", True),
    ("电箱保险丝着火了", True),
    ("防溺水宣传牌旁边有个孩子落水了", True),
    ("快来，如果再不来人他就要没气了", True),
    ("昨天吵架的那个邻居拿着刀在砸我家门", True),
    ("我没拉住他跳下去了", True),
    ("别墅着火了", True),
    ("不知怎么回事就着火了", True),
    ("今天星期天，广场上人挤人有人被踩倒了", True),
    ("我妈一直在吐，喘不上气", True),
    ("滑坡堵住路了，有辆车被埋，司机出不来", True),
    ("两辆车撞了，有人被甩出来躺在路中间，刚才看错了，是三辆车", True),
    ("孩子走丢了，他爸说没事了，让我别担心", True),
    ("孩子卡在电梯门缝里了，还好没有压到头", True),
    # English, as the Chinese is judged: equipment joined by a hyphen, a bargain's slang, a
    # standing nuisance, a chimney, a company's collapse, a welder's sparks.
    ("Where can I get fire-safety training in English?", False),
    ("Is this 'explosion price' banner false advertising? The price is the same as before", False),
    ("the factory lets out black smoke every evening, my kids cough", False),
    ("smoke from the chimney of the brick works makes my kids cough", False),
    ("the underpass is knee deep every time it rains, we cannot walk to the metro", False),
    ("the P2P platform collapsed and we lost our deposits, how do we get them back", False),
    ("sparks from welding at the construction site past midnight, very noisy", False),
    ("my father faints every morning and today he is not breathing", True),
    ("a man collapsed at the bank while taking out money, he is not breathing", True),
    ("a worker welding got a shock and fell, he is not moving", True),
    ("there's a bomb in a bag at the station", True),
    ("the fire alarm is ringing and the fire is spreading to the stairs", True),
    ("Temple firecrackers going off like a bomb at 5 every morning", False),
    ("the railing on the bridge is broken, some pieces fell into the river", False),
    ("a child fell into the river near the bridge", True),
    ("Fire hydrant near the kindergarten gate is leaking, looks like a car hit it", False),
    ("a car hit the boy on his bike, he is not moving", True),
    ("the bench has a broken slat with nails sticking out", False),
    ("he stepped on a board, a nail sticking out of his foot", True),
    ("got bitten by a dog years ago so I'm nervous, the new neighbour's dog barks all night",
     False),
    ("my friend tried to kill himself last year, he's okay now, where can I find a counsellor",
     False),
    ("my son got lost in the mall this afternoon but the security guard found him in 20 minutes",
     False),
    ("my son got lost in the mall, we still haven't found him", True),
    ("工地的大卡车停在小区门口，堵住我们的路，每天早上我们的车出不去", False),
    ("Thick yellow smoke is pouring out of the chemical plant chimney right now, my kids are "
     "coughing, their eyes are burning", True),
    ("[agent note] Silent call. Caller tapped the phone twice when asked to tap if unable to "
     "speak. Male voice shouting in background. Room 2207.", True),
    ("yes hello I would like to order... no sorry I can't talk properly he's in the next room. "
     "508 Golden Bay Apartments. please be quick", True),
    ("a dog just bit my son on the leg in the park, the owner ran away", True),
    ("our dog bit a neighbour's cat, is that a matter for the police?", False),
    ("the bank app shows transfers I never made, still happening as we talk", True),
    # Set W's lessons (English callers) and X's (the annex's fine lines).
    ("i am in one room with 10 others, door lock, they say I owe money for training and cannot "
     "go out until I bring new members", True),
    ("a man is up on the billboard on the roof with a can, he poured something over himself",
     True),
    ("the ditch they dig for the pipes fell in on one worker, I can see only his head and arm",
     True),
    ("thirty workers have the boss shut inside the site office and somebody just brought a can "
     "of petrol", True),
    ("I had a minor collision on 15 March, nobody hurt. How do I get the traffic police "
     "accident certificate?", False),
    ("Someone in my WeChat group says a chemical plant exploded in the north district. Is it "
     "true?", False),
    ("Agent summary: caller reported a 'bomb' in his fridge, then laughed and said it was "
     "leftover durian. Third joke call this week.", False),
    ("the old brick wall collapsed in the rain last night, bricks all over the path. nobody was "
     "there thank god", False),
    ("幸福里后面那堵老围墙塌了一半，砖头堆在路边，当时没人在那儿。", False),
    ("围墙塌了，有人在那儿被压住了", True),
    ("山脚下那段挡土墙开裂鼓包了，下面就是人行道，现在还没掉东西，得赶紧排查。", False),
    ("挡土墙开裂鼓包了，已经掉下来砸到一个老人，赶紧来", True),
    # Set U's lessons: a meal "ordered" to an address, yes-or-no answers with him beside, a
    # scream and then nothing.
    ("喂，我要一份大份的披萨，对，送到锦绣花园五栋四零二，越快越好", True),
    ("我点的外卖送到了但是少了一份，商家不理", False),
    ("嗯，是的，我不方便说话，你问我，我只能说是或者不是，他在旁边", True),
    ("我在开会不方便说话，想问个社保的事", False),
    ("隔壁两口子又在闹，这回不一样，女的尖叫，砰砰撞墙，后来突然没声了", True),
    # Set T's lessons: rescued from the water, a rumour asked about, lost once before, a habit.
    ("上午河边有人落水已经救上来了想问送哪个医院了", False),
    ("有人落水了，救上来了，可是没有呼吸了", True),
    ("河边有人落水，还没救上来", True),
    ("听说对面山上着火了，是真的吗", False),
    ("对面山上着火了，是真的，火很大", True),
    ("家里老人上个月走丢过，想问能不能办防走失手环", False),
    ("我爸走丢过两次，今天又不见了", True),
    ("楼后面老有人烧塑料味道很难闻", False),
])
def test_the_emergency_judgement_handles_negation_conditions_and_what_is_over(text, emergency):
    judged = danger.judge(text)
    assert judged.emergency is emergency, judged.why
    assert judged.why.startswith("emergency" if emergency else "no emergency")


# A review's sentences against the first English set-asides of 2026-12-06 (each a real
# emergency they set aside, or a look-alike a new cue took), judged with the catalog's terms as
# the service judges.
@pytest.mark.parametrize("text, emergency", [
    ('This is not a prank call, my husband is bleeding badly', True),
    ('please this is not a joke call, there is a fire in my kitchen', True),
    ("I'm not just kidding, he has a gun", True),
    ('I keep getting prank calls from a man who says he will kill me tonight', True),
    ('the company collapsed, we lost our wages, and my father'
     ' collapsed when he heard, he is not breathing', True),
    ('My daughter is missing since this morning, we only found her phone by the river', True),
    ("my son is missing, we found him on CCTV getting into a stranger's car", True),
    ('my son is missing since yesterday, police still havent found him', True),
    ('my son is missing since yesterday, nobody has found him yet', True),
    ('my father has had chest pain all night and is sweating a lot', True),
    ('my baby has been choking all night and lips are blue', True),
    ('the forest fire has burned all day and is now close to the houses', True),
    ('The neighbour burns rubbish every evening and tonight his shed is on fire', True),
    ('every night there is a chemical smell and tonight my'
     ' eyes are burning and my son is vomiting', True),
    ('the underpass is knee deep every time it rains and a'
     ' man is stuck in the water right now', True),
    ("I've been at work all day, came home and there's smoke"
     " pouring out of the neighbour's door", True),
    ("The factory next door is noisy every night. There's smoke"
     ' pouring from its roof and people shouting', True),
    ('smoke pouring from the chimney of the factory and'
     ' the workers are running out screaming', True),
    ("there's smoke coming out of the neighbour's window, next to the old chimney", True),
    ('every evening there is smoke from the chimney but tonight the whole roof is on fire', True),
    ("there's a bag under the seat that looks like a bomb", True),
    ('a package at the station looks like a bomb, it has wires coming out', True),
    ("the wall collapsed, nobody was there except my son, he's under the bricks", True),
    ('The building collapsed. Nobody was there, I think, but I'
     ' hear someone calling for help under it', True),
    ('a car crashed into a tree on the highway, nobody was there to help', True),
    ('car crash on the country road, nobody nearby, the driver is stuck in the car', True),
    ("a power line fell down on the road by the welding shop and it's sparking, kids around", True),
    ('a live wire is down and sparking next to the fireworks stall', True),
    ('the building is on fire on 3 separate floors', True),
    ('a fire broke out on 2 decks of the ferry', True),
    ("Call received on 15 March: caller's husband collapsed and is not breathing", True),
    ('He tried to kill himself years ago and now he is'
     ' standing on the bridge saying goodbye', True),
    ('my brother tried to kill himself last year, now he'
     " sent me a goodbye text and won't answer", True),
    ('脚手架塌了，工人被压在下面，旁边的塔吊还没倒，请尽快排查', True),
    ('挡土墙塌了一半还没塌完，有人被压在下面，请派人来排查', True),
    ('孩子被拐过一次，今天放学没回来', True),
    ('A car hit the guard rail on the highway and is on its side', True),
    ('a car hit the pole at high speed, the front is crushed', True),
    ('a car hit the wall at the bus stop, there were people waiting there', True),
    ('They said my son fell into the river. Is that true? Please help me', True),
    ('my daughter and all her stuff fell into the lake', True),
    ("he fell onto rebar, there's rebar sticking out through his thigh", True),
    ('accident number 12 bus rolled over, people screaming', True),
    ('I can only see his head, the ditch fell in on him', True),
    ('every night he beats her and tonight he has a knife', True),
    ("We found him but he's not breathing", True),
    ('我订个外卖两个小时了还没送到，商家也不接电话', False),
    ('我点个外卖送到小区门口保安不让进，怎么投诉', False),
    ('我要一份炒饭送到三楼，结果送错了', False),
    ('我不方便讲话，她在旁边睡觉，我就想问下公积金怎么提取', False),
    ("sorry I can't talk right now, my manager, she's"
     " right here, I'll call back about my tax", False),
    ('my eyes are burning from chopping onions', False),
    ('my eyes are streaming from hay fever, where is a pharmacy open', False),
    ("my car ran out of fuel, I'm walking back with a can of petrol", False),
    ("I'm carrying a can of fuel for my generator, is that allowed on the bus?", False),
    ('they said we cannot go out during the typhoon, is the metro running?', False),
    ("I can't leave until 9pm every day, my boss never pays overtime", False),
    ('I keep them in the fridge, how long do vaccines last', False),
    ("our dog bit my son's toy", False),
    ('the dog just bit the delivery box', False),
    ("I found transfers I never made on my statement and the bank still won't refund me", False),
    ('every time it rains the underpass floods and today a car'
     ' is stuck in the water with a child inside', True),
    ("he's safe but the other child is still in the water", True),
    ('my 6-year-old is missing in the park, has anyone found her?', True),
    ('the water has been rising all night and we are stuck on the roof', True),
    ("we found her, she's cold and blue", True),
    ('explosion price on every phone this weekend, is it a real discount?', False),
    # A second review's, of the mends.
    ('the stage platform collapsed at the concert, people are under it', True),
    ('the viewing platform collapsed and people fell', True),
    ('the scaffolding platform has collapsed, two workers are under it', True),
    ("a dog bit my daughter's leg", True),
    ("a big dog bit my son's arm, it's deep", True),
    ("a dog just bit a child's hand in the park", True),
    ('a stray dog bit the delivery guy', True),
    ("he's carrying a can of petrol and shouting at the boss", True),
    ('a man with a can of petrol is standing in the lobby shouting', True),
    ('my ex is holding a bottle of petrol outside my door', True),
    ('the guy brought a can of gasoline into the office', True),
    ("I can't talk right now, he's right here, please send police to 5 Park Road", True),
    ("sorry can't talk now, he's right here", True),
    ("everyone in the office can't stop coughing after the cleaner mixed two products", True),
    ('the whole class is coughing non-stop after a spray in the corridor', True),
    ('my eyes are burning and the whole family has headaches'
     ' and nausea in the room with the heater', True),
    ('昨天煤气泄漏 but 现在还在漏', True),
    ('昨天煤气泄漏 and now 还在漏', True),
    ('这个楼昨天塌了一块 but 现在还有人在下面', True),
    ('我爸上个月心脏病发作过 but 现在又发作了', True),
    ('my son had a seizure yesterday but he is having another one right now', True),
    ('my son had a seizure yesterday and now he is having another one', True),
    ('my wife overdosed last year and tonight she did it again', True),
    ('he collapsed but he is breathing now', True),
    ('they shut me in the basement', True),
    ('the boss keeps them inside the warehouse, they cannot leave', True),
    ('我不方便说话，他在我旁边睡着了，我身上都是伤', True),
    ('someone is moving money from my account right now, transfers I never made keep coming', True),
    ('我要一份披萨送到人民路5号，结果你们没人接', True),
    ("my son has asthma attacks every night and he can't breathe", True),
    ("every night the neighbour's gas smells and my wife has fainted", True),
    ('huge bang, sounded like a bomb, windows shattered and people are screaming', True),
    ("Call on March 15 at 22:10: caller's husband collapsed in the kitchen", True),
    ('Caller on 15 March reports her husband collapsed in the kitchen', True),
    ('Note on 3 May: caller says a man fell into the river', True),
    ('Hi我家着火了，在人民路5号', True),
    ("Hi, I'm calling for help with my residence permit renewal", False),
    ('I am calling for help about my water bill, it is too high', False),
    ('a shopping trolley is stuck in the water at the canal, can someone remove it', False),
    ('the dead fish are still in the river, it smells', False),
    ('the sky was cold and blue this morning, is the park open?', False),
    ('my kitchen looks like a bomb hit it, can the landlord fix the cabinets', False),
    ('我家孩子走丢过一次，今天想问问哪里能办防走失手环', False),
    ('积雪压着车棚，怕塌下来砸到人，麻烦派人来看看', False),
    ('Black smoke comes out of the factory chimney. I want'
     ' to know who checks their door permits', False),
    ("my car ran out of fuel, I'm walking back with a can of petrol", False),
    ("I'm carrying a can of fuel for my generator, is that allowed on the bus?", False),
    ("sorry I can't talk right now, my manager, she's"
     " right here, I'll call back about my tax", False),
    ('my eyes are burning from chopping onions', False),
    ('I keep them in the fridge, how long do vaccines last', False),
    ('they said we cannot go out during the typhoon, is the metro running?', False),
    ("I can't leave until 9pm every day, my boss never pays overtime", False),
    ('I called on May 3 about the fire and nobody came, the building is still burning', True),
    ('孩子被拐过一次，今天放学没回来', True),
    # something coming down now, a tree across a road or on a live line over people
    ('plaster keeps falling from the ceiling of the stairwell onto the steps', True),
    ('last year plaster was falling in our stairwell, it was repaired, who pays for it?', False),
    ('is it normal that tiles are falling off new buildings? asking for my landlord', False),
    ('a big tree fell down across the road near the school, cars are stopping suddenly', True),
    ('a big tree fell down across the road last night, it is still there, please remove it', False),
    ('a branch is resting on the power line right above the bus stop where people wait', True),
    ('the tree is leaning on the power line behind our house, please trim it', False),
])
def test_english_set_asides_yield_to_what_is_said_now_and_new_cues_spare_look_alikes(text,
                                                                                    emergency):
    catalog = load_catalog()
    judged = danger.judge(text, catalog.emergency_examples, catalog.emergency_keywords)
    assert judged.emergency is emergency, judged.why


# What the blind sets Y (money, property and liberty around money) and Z (English told without
# the danger word) taught, in other words than theirs, with the look-alikes each new cue must
# spare and the dangers each new set-aside must not take.
@pytest.mark.parametrize("text, emergency", [
    ("我刚在网银上把货款付出去了，对方邮箱是假的，银行说还在处理，能不能帮我截一下", True),
    ("上个月转出去的钱，现在还能不能追回来？", False),
    ("客服一直在电话里催我，让我先交保证金才能退款", True),
    ("我弟在外地一个做直销的地方被人看着，手机都被收了", True),
    ("他们说不还钱就别想回家，把我堵在公司会议室里", True),
    ("做笔录的民警说不签字就别想走，这是上个月的事，我要投诉", False),
    ("我妈人在银行柜台，电话里的人让她把定期取出来转过去", True),
    ("有两个人假装是燃气公司的，现在还在楼里挨家收检测费", True),
    ("一个自称中介的带我爸去公证处签字卖房，他电话一直打不通", True),
    ("几十个交了定金的业主要往马路中间坐，交警还没来", True),
    ("偷牛的车刚出村，往高速口方向开了，车牌我看见了", True),
    ("对方让我把短信验证码念给他，我还没念", True),
    ("地铁上有人摸我包，我发现了，东西没丢，就想说一声", False),
    ("前天我们楼有人家被撬了，能不能加强巡逻", False),
    ("my throat is closing up after the shrimp and my tongue feels swollen", True),
    ("the knife went deep into his hand and the towel is soaked red", True),
    ("I want to order a pizza to 18 Renmin Road, I can only say yes or no, he is still here",
     True),
    ("my two-year-old can only say yes or no, is that normal for her age", False),
    ("I ordered a pizza to 18 Renmin Road two hours ago and it never came", False),
    ("my daughter didn't come home last night but she just walked in, can I cancel my report",
     False),
    ("my son didn't come home last night, his phone is off", True),
    # said to be a joke, still a danger: whoever says so is often wrong (a review's point)
    ("she says she wants to die before every exam, she's joking, where is counselling", True),
    ("she says she wants to die and she is not joking, she gave her things away", True),
    ("the boys next door play video games all night shouting kill him, please ask them to stop",
     False),
    ("my son was playing video games and he just collapsed, not breathing", True),
    ("he was playing games shouting and now he says he will kill me, he has a knife", True),
])
def test_money_in_progress_and_english_without_the_danger_word(text, emergency):
    catalog = load_catalog()
    judged = danger.judge(text, catalog.emergency_examples, catalog.emergency_keywords)
    assert judged.emergency is emergency, judged.why


# Incident types as tables, each type told plainly, twice without its danger word (what the caller
# sees, hears or smells, in many voices) and once as a harmless near-miss, written for the tests
# by someone who had seen neither the cues nor the corpus: the 110 desk's own (74 types) and the
# medical and rescue matters callers bring either line (61: a stroke, a seizure, labour, a scald,
# carbon monoxide, a child in a lift...), and 12345's everyday complaints whose caller describes
# an emergency without knowing it (60: a lift stuck with a mother inside, a burst heating pipe
# and someone fallen in the steam, a gas main dug through at night...), and the words as they
# reach us (240): speech-recognition transcripts with homophone slips, an agent's hurried notes,
# callers who cannot talk freely, dialects, foreign residents in English, Chinese and pinyin,
# online messages with the danger buried in them; and 120 pairs that differ by the few words
# that decide "now" (past, negation, conditions, over or not, hearsay, a film breaking into the
# real world, a habit against today, plans, time words inside phrases, a mistake corrected); and
# a supervisor's week of logs (200: a cave flooding, an avalanche, a diver surfacing with blood,
# a lift stuck with a heart patient, a bully's threat from a school toilet...).
# And plain emergencies written by a reviewer who had read the set-aside rules, each told with
# one rule's words (a turn after the calming words, a question asked while it happens, one of
# several still trapped, a place named like a condition...): the 155 of 171 that what an agent
# gets calls emergencies on 2026-12-05, kept so that no rule grows back over them (the other 16
# are in that day's note on issue 17); and the near-misses a second reviewer wrote against the
# rules that came of them (a repair still awaited after a turn, "没事就是…", "不是又…", a fire
# feared "迟早", "这次来是补办…"): the 155 of 176 that set off no cue, and 35 emergencies.
# Last, emergencies buried in ordinary calls (a complaint about the property company that ends with
# the gas pipe hissing now, a benefits question from someone who has swallowed a bottle of pills,
# an agent's note with open flames in the middle) and long ordinary calls with danger words in
# passing, written blind: 20 of 160 missed and 11 of 100 set off a cue at the first reading; and
# calls about an incident already reported (a second call, 催警, an agent's callback: "我二十分钟前
# 打过了，他还在砸门"; a ticket's progress, thanks, a report taken back), written blind: 10 of 150
# missed and 9 of 100 set off a cue at the first reading; and hazards that are 12345's (a manhole
# cover missing, a leaning tree, wires exposed, a restaurant's smoke, nobody hurt, feared or judged
# risky) with the same hazards at the moment they hurt someone, written blind: 3 of 60 missed and
# 29 of 200 set off a cue at the first reading; with 60 present emergencies a reviewer told in the
# words of the rule that came of it ("怕", "挺危险的", "暂时没出事": 25 set aside by its first
# version).
# On 2026-12-05 (evening), three more blind tables, first read by what an agent gets: what a
# speech recogniser makes of the first seconds of a call (no punctuation, 着伙, 就护车, the
# agent's greeting mixed in): 4 of 150 missed, 5 of 100 with a cue; callers who are not where it
# happens (a video call that froze on the floor, a smart watch's fall alert, a livestream, a
# parent's phone off in another city, knocking heard through a ceiling): 5 of 150 missed, 11 of
# 100 with a cue and 13 more called by the model alone, mostly scares that had ended well
# ("虚惊一场", "她刚回过来电话"); and 12345's complaints told in heated words ("要出人命了",
# "抢钱啊", "气得我心脏病都要犯了", "真着火了谁负责"): 1 of 60 missed, 27 of 190 with a cue. Kept:
# the rows that pass (the six left out are in that day's note). Then three more: old age and
# care told by its signs ("嘴角往一边歪", "一躺就憋", "叫他就睁一下眼"): 16 of 150 missed, none of
# 100 with a cue; people on the move (a dozing coach driver, a taxi "not the way home", a ferry
# taking water): 9 of 150 missed, 3 of 100 with a cue and 12 more called by the model alone,
# mostly questions for a number or a time; crises at home and in the mind (a farewell that gives
# the cat away, 40 pills, "救我" and the line dead; "吵得我想跳楼", a novel's plot, a school's
# "遗书" essay): 5 of 150 missed, 20 of 100 with a cue. When batch 12 (foreign callers) came in,
# five emergencies of these tables that the model alone had caught near 0.5 fell under it; the
# tables' emergencies the model alone caught below 0.7 were then given cues (39 of 43). Last,
# children and school (a toddler with a washing-pod in the mouth, a second seizure, a child lured
# "to see the puppies", a nanny gone with the baby) and work, sites and farms (a ditch wall on a
# digger "只露个脑壳", a safety valve screaming, fumigant in a silo, "当凉茶喝了"): 6 and 7 of 150
# missed, 2 and 5 of 100 with a cue at the first reading; then neighbours and housing (water
# through a lamp that is still lit, a scream and then silence; a parrot crying "救命", fish gutted
# in the stairwell) and nights out (a stall owner slashed, a lightning strike at a camp; a
# floor-dance, a fire show): 4 and 2 of 100 missed, 11 and 8 of 100 with a cue at the first
# reading. The lessons of batches 13 to 18's training part (a levee seeping more and more, a
# child and the household's pills, "heard a loud thud … no response", an escalator running
# backwards, "助けて", "Помогите", a battery swelling hot, pinyin with tones; a gas alarm that
# does not sound, "已由家属接回", a river run red with dye, "nobody stuck", "淹死我算了", a
# quarry's blasting), told again in other words by the one who wrote the rules: not blind,
# they keep the rules. So are batch 12's (foreign callers): passports taken and people held, an
# oxygen machine or ventilator on its battery in a blackout, "end it all", revenge, money still
# going out, a branch above where people wait; and what must stay calm beside them (a passport
# kept for a visa or a check, a spare battery, a blockade planned for Friday). And the dangers
# told in Korean, Japanese, Russian and Arabic, beside the same words harmless (a knife and fork,
# a blood test, a light left on, a tree fallen, a car not moving in a jam). Last, in Spanish,
# Portuguese, French, German, Vietnamese, Indonesian, Hindi (Latin letters and Devanagari) and
# Thai, written after their cues, not from the corpus: a fire, a gas smell, a knife, a robbery, a
# fall that bleeds, a collapse, a child in the water or lost in a mall, a "safe account" call; and
# beside them the same words harmless (a fire exit, a blood test or donation, a red light, "no hay
# heridos", "không ai bị thương", a child's lost passport or wallet, stuck in traffic); then
# what two blind writers' sets taught them (someone choking or no longer answering, a baby shut in
# a car, a boat taking water, a landslide, a pit, a stampede, hiding from an intruder, followed
# home; beside them a fire drill, a first-aid course, blood to donate, a seller who no longer
# answers, a robbery in March since settled, a fight last night now quiet); and a review's finds
# in those languages: words that lose their accents into others ("bị đánh thức", "đám người",
# "tìm tài liệu"), everyday words ("tolong" for "please", "minta ampun", "brennt nicht",
# "pegando fogo" of a party, a possession "de ma fille"), and emergencies an "it is over" word
# had set aside ("ya pasó media hora", "đã hết", a danda before "today").
# And a review's attack on the lessons of sets Y and Z: a payment just made, asked to be stopped,
# against a parcel to intercept or a son to hold back; a chase for a "task" against a chase for
# a review; a voice on the phone at the counter against a teller's queue; one child home and
# another not; "cancel the call" said while he beats her; a game's shouting a sentence before a
# real threat. Then the common dangers in ten more languages' plain words (Spanish to Japanese),
# beside what their words look like without their marks (Vietnamese "cầu thang trước" is no
# "last month", "bát cốc" no kidnapping) or say of a thing (a wallet gone, a network collapsed).
# And a review's attack on those (196 ordinary matters written to set them off: a meal's smoke, a
# card "swallowed", rent paid "now", a bus that will not stop, a lift stopped for inspection):
# what the narrowed cues now get right of it.
# And set AL's lessons in English (someone face down by a pond for an hour, a worker who says he
# will jump unless paid, a cow in a highway's fast lane, a boiler's pressure in the red with its
# operator gone, "nothing is burning"), with a review's attack on them: a massage table, a pose,
# a drill, a parade, a tyre's gauge, a business in the red, "jump at the chance" or "jump ship".
# And set AM's lessons in regional Mandarin (a car 开起歪歪扭扭 into the oncoming lane, stubble
# fire 燎到 the woods, a lorry's steel pipes coming off one by one; "一打开", "肺都要炸了"), with a
# review's attack: a fever 烧到三十九度, an overtaking fined, a detour, dirt spilt, a load dropped
# while unloading, a driving school's rules. Then batch 21's lessons (a hydrant as a recogniser
# spells it, "not sparking", run over, 商量着, a fight reported to police who came), money and
# property as it happens (sets AO and AP), and a review's attack on both. Then batch 23's
# lessons: a smoke alarm "着火会响的那种", dates knocked off a tree, a banner tied to one, a sign
# blown over "躺在地上", a lift's captives who let themselves out, "从昨天就发烧抽风", smoke that keeps
# people in, a boat listing, stones rolling down above homes; and a review's attack on them
# ("再拖下去就不行了", "着火了就报警了", a man tied with rope, a courier under a fallen sign).
# Then batch 25's (bangs that go on, a reaction to a drip, a line hanging low by a queue, "叫他不答
# 应" of someone lying there, a farewell and no answer, a water pipe dug through, a hurt only
# supposed, a smell gone) and a review's attack on them (a refusal, 抽血, a fish's eyes, 网线).
# Then batch 27's (a face swelling and breath short, someone pinned under a fallen sign, a hole
# opening before school ends; a flood's aftermath, "要被他逼得跳楼了", scaffolding 歪歪扭扭) and a
# review's attack on them ("被水冲得松手了", "着火的时候先闻到…现在满屋子都是", 不让下学期报名).
# Then money going as the caller speaks, in English, Hinglish and Chinese: an "unlock" fee about to
# be paid, the swindler still on the line, a balance falling with nothing bought; beside a parking
# fee, a phone bill's balance, a tax office and a fee paid last month.
INCIDENTS = tuple(ROOT / "tests" / "data" / f"incidents-{name}.tsv"
                  for name in ("110", "medical-rescue", "12345-complaints", "voices",
                               "time-and-negation", "a-week", "set-aside-words",
                               "set-aside-near-misses", "buried", "follow-ups", "hazards",
                               "hazard-words", "agent-notes", "asked-relayed-planned",
                               "new-rules-attacked", "seen-heard-smelled", "online-requests",
                               "voices-that-hide-it", "new-cues-attacked", "terse-summaries",
                               "foreign-callers", "foreign-callers-2", "asr-transcripts",
                               "from-a-distance", "heated-ordinary", "elderly-and-carers",
                               "on-the-move", "behind-closed-doors", "children-and-school",
                               "work-sites-farms", "neighbours-and-housing",
                               "night-and-public-places", "batches-13-18-lessons",
                               "batch-12-lessons", "other-scripts", "other-languages",
                               "money-and-english-attacked", "ten-languages",
                               "ten-languages-attacked", "property-roads-groups",
                               "property-roads-groups-attacked", "cantonese",
                               "cantonese-attacked", "english-second-language",
                               "english-second-language-attacked", "coast-english-attacked",
                               "regional-mandarin-attacked", "batch-21-lessons",
                               "property-now", "batch-21-attacked", "batch-23-lessons",
                               "batch-23-attacked", "batch-25-lessons",
                               "batch-25-attacked", "batch-27-lessons", "batch-27-attacked",
                               "model-leaves-to-cues", "money-going-now"))
# Harmless near-misses the judgement calls emergencies on purpose: a child who swallowed a pill is
# for an agent to judge, not for a list of harmless pills; domestic violence heard of in a named
# compound is for the police to look into; a swindler's story of a son arrested in a fight is
# set aside only by knowing who is speaking, which the words do not say; a question about a fight
# or a suicide in a clause of its own, and a suicide post followed by a laugh, are for a person to
# judge (a question or a joke clears only the danger of its own clause).
ERRS_TOWARDS_DANGER = {"孩子误吃了一片维生素片，会有事吗", "同事说他们小区有人家暴，我也不清楚是哪家",
                       "刚接到电话说我儿子打架被抓了，要交保证金，我直接挂了，我儿子就坐我旁边，举报一下这个号码",
                       "如果身边人有自杀倾向应该怎么劝，想咨询一下",
                       "要是有人在楼下打架，我打这个电话有用吗？",
                       "我朋友发朋友圈说要跳楼，后面跟了个哈哈，他刚跟我视频，在家吃火锅呢"}


def _incidents() -> list:
    rows = []
    for path in INCIDENTS:
        lines = path.read_text(encoding="utf-8").splitlines()
        assert lines[0].split("\t") == ["type", "emergency", "text"], path.name
        for n, line in enumerate(lines[1:], 2):
            kind, flag, text = line.split("\t")
            rows.append(pytest.param(text, flag == "1", id=f"{path.stem}:{n}:{kind}"))
    return rows


@pytest.mark.parametrize("text, emergency", _incidents())
def test_incident_types_are_emergencies_however_they_are_told(engine, text, emergency):
    """An emergency must be one in what an agent gets (cues and model); a near-miss must set
    off no cue. The model's own false alarms on near-misses are a probability that moves with
    every corpus change: the benchmark measures them (precision), the tests do not pin them."""
    if emergency:
        rec = engine.recommend(text=text)
        assert rec.emergency and rec.platform == "110", rec.reason
        return
    # judged as the service reads it (traditional characters, written Cantonese, spaces, pinyin)
    read = engine.recommend(text=text).read_as or text
    judged = danger.judge(read, CATALOG.emergency_examples, CATALOG.emergency_keywords)
    assert judged.emergency is (text in ERRS_TOWARDS_DANGER), judged.why


def test_cues_led_by_look_behinds_match_the_same_with_their_literal_first():
    texts = [row.values[0] for row in _incidents()] + ["防自燃", "容易引燃的东西着火了", "不着火",
                                                       "差点着了", "没有着起来了", "像着了火似的"]
    rewritten = 0
    for patterns in danger.CUES.values():
        for pattern in patterns:
            moved = danger._literal_first(pattern)
            if moved == pattern:
                continue
            rewritten += 1
            before, after = re.compile(pattern), re.compile(moved)
            for text in texts:
                assert ([m.span() for m in before.finditer(text)]
                        == [m.span() for m in after.finditer(text)]), (pattern, text)
    assert rewritten >= 30


@pytest.mark.parametrize("text, platform, category, emergency", [
    ("我家里有很大的煤气味，怎么办", "110", None, True),
    ("有个小孩掉到河里去了，快来人啊", "110", None, True),
    ("十字路口的红绿灯全都不亮了", "110", "road_traffic", False),
    ("我在网上买东西被骗了，付了钱对方把我拉黑了", "110", "property_safety", False),
    ("干了半年活老板一分工资都不给", "12345", "market_supervision", False),
    ("没有人受伤，就是小区门口的井盖没了", "12345", "public_facilities", False),
])
def test_ordinary_words_get_the_right_answer(engine, text, platform, category, emergency):
    rec = engine.recommend(text=text)
    assert (rec.platform, rec.emergency) == (platform, emergency), rec.reason
    if category:
        assert rec.category == category, rec.reason
    assert rec.method == "model" and len(rec.alternatives) == 3


@pytest.mark.parametrize("written, read", [
    ("家裡有很濃的煤氣味", "家里有很浓的煤气味"),
    ("電線桿倒了", "电线杆倒了"),                  # not OpenCC's phrase "在线"
    ("電視被打壞了", "电视被打坏了"),
    ("电视被打坏了", "电视被打坏了"),              # OpenCC alone makes it "打坯"
    ("樓上鄰居家著火了", "楼上邻居家着火了"),
    ("著火了", "着火了"),
    ("著名的景点", "著名的景点"),
    ("乾衣機壞了，头发乾不了", "干衣机坏了，头发干不了"),
    ("衞生間漏水", "卫生间漏水"),                  # Hong Kong's variant
    ("請回覆訊息", "请回复讯息"),
    ("樓上电视被打坏了", "楼上电视被打坏了"),      # one traditional character: only it changes
    ("燶味", "燶味"),                              # Cantonese's own characters stay
    ("閉じ込められた", "閉じ込められた"),          # Japanese
    ("ＧＡＳ漏了，打１２０", "GAS漏了，打120"),
    # written Cantonese
    ("冇人受傷，只係路邊個井蓋唔見咗", "没有人受伤，只是路边个井盖不见了"),
    ("個細路唔見咗成個鐘，頭先仲喺公園", "个小孩不见了成个小时，刚才还在公园"),
    ("架車撞咗人，個人喺度流緊血", "架车撞了人，个人在流血"),
    ("有個後生仔企喺天台度，好似想跳落嚟", "有个年轻人站在天台度，好像想跳下来"),
    ("唔好意思，我想問吓點樣申請公屋，佢哋話要排隊", "不好意思，我想问下怎么样申请公屋，他们说要排队"),
    ("佢話唔係火警，係隔籬燒嘢", "他说不是火警，是隔壁烧东西"),
    ("搵唔到劳动仲裁嘅电话", "找不到劳动仲裁的电话"),      # 仲裁 stays
    # Mandarin words in a Cantonese text stay: 系统, 关系, 企业, 要紧, 打交道, 吓一跳, 中文系
    ("佢嘅企业系统出咗问题，关系唔大，同佢打交道时吓一跳，唔要紧",
     "他的企业系统出了问题，关系不大，同他打交道时吓一跳，不要紧"),
    ("佢喺中文系讀書，我等咗三個鐘頭", "他在中文系读书，我等了三个钟头"),
    ("佢話要跳樓，唔好跳啊", "他说要跳楼，不要跳啊"),
    # and a Mandarin text is no Cantonese for a word the two share
    ("头晕低烧好几天了", "头晕低烧好几天了"),
    ("我要打交警队的电话", "我要打交警队的电话"),
    ("唔，好像有人晕倒了，完成日期是检测点样品时定的", "唔，好像有人晕倒了，完成日期是检测点样品时定的"),
    ("小心火烛，臭名昭著，合著的书", "小心火烛，臭名昭著，合著的书"),
    ("樓上鄰居打坏了东西，是不是有病么", "楼上邻居打坏了东西，是不是有病么"),   # mixed
    ("我们这个伢儿冇得人管", "我们这个伢儿没有得人管"),  # Hubei's 冇 is 没有 too
    # words Mandarin callers say too are no sign of Cantonese (心口, 扯筋)
    ("我爸心口疼得厉害，系统说要排队，人工客服不接", "我爸心口疼得厉害，系统说要排队，人工客服不接"),
    # what a Cantonese caller says of a person who does not respond, of being held, of a danger
    ("阿爷突然冇咗反应，叫极都唔应，个心口好似冇起伏", "阿爷突然没了反应，怎么叫都不应，个胸口好像没有起伏"),
    ("佢话要交钱先可以走，手机都收埋", "他说要交钱才可以走，手机都收走"),
    ("有班人喺度围住个学生打，仲影紧片", "有班人在围着个学生打，还在拍片"),
    ("工人眼都擘唔开，我阿妈行唔到，唞唔到气", "工人眼都睁不开，我阿妈走不了，喘不过气"),
    ("成条楼梯好大阵臭鸡蛋味，唔知边户漏，我惊撳𨋢会出事", "整条楼梯好大阵臭鸡蛋味，不知道哪户漏，我怕按电梯会出事"),
    ("隔篱两公婆日日嗌交，净系闹，冇郁手", "隔壁两公婆天天吵架，只是闹，没有动手"),
    ("消防已经救熄咗，我想问搵边个赔，系咪真㗎", "消防已经扑灭了，我想问找谁赔，是不是真的"),
    ("健身房执咗笠，琴晚屋企畀人爆格", "健身房倒闭了，昨晚家被人入室盗窃"),
    # and what stays Mandarin: 热闹, 电话费, 闹钟, 要紧, 抓紧
    ("佢屋企好热闹，电话费又贵，闹钟冇响，唔要紧，抓紧啲", "他家好热闹，电话费又贵，闹钟没有响，不要紧，抓紧些"),
])
def test_traditional_characters_and_cantonese_are_read_as_the_mandarin_they_mean(written, read):
    assert recommender.normalise(written) == read


@pytest.mark.parametrize("written, read", [
    ("没有 人 受伤 就是 小区 门口 的 井盖 没了", "没有人受伤就是小区门口的井盖没了"),
    ("他 喝 了 农 药 ， 不 让 我 们 打 1 2 0", "他喝了农药，不让我们打120"),
    ("你好 问一下博物馆周一开不开门 要不要预约", "你好问一下博物馆周一开不开门，要不要预约"),
    ("不是 着火，就是邻居家烧烤的烟", "不是着火，就是邻居家烧烤的烟"),  # no comma cuts a negation
    ("喂 我在十八楼 楼道里全是烟 看不见", "喂我在十八楼，楼道里全是烟，看不见"),  # clauses spaced
    ("没有 人 受伤 就是 小区 A 栋 门口", "没有人受伤就是小区 A 栋门口"),  # a building's letter
    ("我们 building 后面 有 人", "我们 building 后面 有 人"),      # a learner's, as written
    ("家里着火了", "家里着火了"),
])
def test_spaces_between_chinese_words_are_read_away(written, read):
    from hotline_link import reading

    assert reading.unspaced(written) == read


def test_every_table_emergency_spaced_by_character_is_still_one(engine):
    """A recogniser that spaces each character: 638 of the tables' 3,849 emergencies in Chinese
    were missed so, before the spaces were read away; one is now, whose spaces parted clauses."""
    texts = [row.values[0] for row in _incidents() if row.values[1]
             and not re.search(r"[A-Za-z\u3040-\u30ff\uac00-\ud7af\u0400-\u06ff\u0900-\u097f"
                               r"\u0e00-\u0e7f]", row.values[0])]
    missed = [text for text in texts
              if not engine.recommend(text=" ".join(c for c in text if c.strip())).emergency]
    assert len(texts) > 3000 and len(missed) <= len(texts) / 1000, missed


@pytest.mark.parametrize("config", ["s2hk", "s2tw"])
def test_every_table_told_in_traditional_characters_is_read_as_written(engine, config):
    """Each incident table's line as Hong Kong or Taiwan writes it (OpenCC's own conversion) is
    read as the simplified line is; where OpenCC cannot tell the way back (背 / 揹, 坐 / 座), the
    answer is still the same."""
    import opencc

    to_traditional = opencc.OpenCC(config)
    texts = [row.values[0] for row in _incidents()]
    differ = 0
    for text in texts:
        if re.search(r"[\u3040-\u30ff]", text):
            continue                              # Japanese: no Chinese converter's business
        written = to_traditional.convert(text)
        if recommender.normalise(written) == recommender.normalise(text):
            continue
        differ += 1
        want, got = engine.recommend(text=text), engine.recommend(text=written)
        assert (got.platform, got.emergency) == (want.platform, want.emergency), (text, written)
    assert differ < len(texts) / 1000


@pytest.mark.parametrize("text, platform, emergency", [
    ("家裡有很濃的煤氣味，我不敢開燈", "110", True),
    ("廚房瓦斯外洩，味道很重", "110", True),
    ("樓上鄰居家著火了，冒好多煙", "110", True),
    ("電梯困咗人，入面有個小朋友喊緊", "110", True),
    ("機車騎士被撞倒在路邊，流了很多血", "110", True),
    ("沒有人受傷，就是路上有個井蓋沒了", "12345", False),
    ("老闆拖欠我們三個月工資不給", "12345", False),
    ("我想問一下社保卡怎麼補辦", "12345", False),
    # Cantonese
    ("冇人受傷，只係路邊個井蓋唔見咗", "12345", False),
    ("屋企冇煤氣味，我想問下點樣換煤氣錶", "12345", False),
    ("個細路唔見咗成個鐘，頭先仲喺公園", "110", True),
    ("架車撞咗人，個人喺度流緊血", "110", True),
    ("我阿爸突然暈低咗，叫極都唔應", "110", True),
    ("樓下有人打交，拎住把刀", "110", True),
    ("佢企喺天台邊，我叫佢唔好跳", "110", True),       # a plea, no negation
    # a recogniser's spaces
    ("没有 人 受伤 就是 小区 门口 的 井盖 没了", "12345", False),
    # pinyin, without an input method
    ("you ren tiao lou", "110", True),
    ("wojia zhaohuole, kuai lai ren", "110", True),
    ("wǒ de hái zi bú jiàn le", "110", True),
    ("lu deng huai le san tian le", "12345", False),
    ("gong si tuo qian gong zi san ge yue le", "12345", False),
    ("mei you ren shou shang, jiu shi lu shang jing gai mei le", "12345", False),
    ("dian ti li kun le ren", "110", True),
    ("wo xiang wen yi xia she bao ka zen me bu ban", "12345", False),
    ("lou shang mei tian ye li chang ge, hen chao", "110", False),
])
def test_callers_who_write_otherwise_get_the_right_answer(engine, text, platform, emergency):
    """Traditional characters (Hong Kong, Taiwan), Cantonese, a recogniser's spaces, pinyin
    typed without an input method: 11 of these lines are answered wrong when the text is read
    as written."""
    rec = engine.recommend(text=text)
    assert (rec.platform, rec.emergency) == (platform, emergency), rec.reason


@pytest.mark.parametrize("text", ["喂喂你好", "喂？喂？能听见不", "我要投诉一下", "那个，我想说个事",
                                  "在吗在吗", "好的谢谢啊", "xyzzy plugh", "asdf qwer zxcv",
                                  "hello?", "Hello, can you hear me?"])
def test_words_that_say_nothing_get_no_guess_but_the_alternatives(engine, text):
    rec = engine.recommend(text=text)
    assert rec.platform is None and rec.reason.startswith("no recommendation: "), rec.reason
    assert rec.alternatives and all(a.label != UNCLEAR for a in rec.alternatives)


@pytest.mark.parametrize("text, platform, category", [
    ("喂那个就是我们这路上有个景盖不见了晚上黑乎乎的看不到", "12345", "public_facilities"),
    ("嗯 那个 就是 我们小区门口的路灯坏了好几天了", "12345", "public_facilities"),
    ("您好110请讲 喂喂 嗯 那个 小区门口的红绿灯坏了不亮", "110", "road_traffic"),
])
def test_what_a_caller_says_first_does_not_hide_the_matter_after_it(engine, text, platform,
                                                                    category):
    """A recogniser's transcript starts with the caller's "喂，那个，就是" and the agent's greeting;
    the words that say nothing are mostly such openings, so they alone read as nothing to
    place. "喂那个就是我们这路上有个景盖不见了" (a homophone slip too) was unclear at 1.00."""
    rec = engine.recommend(text=text)
    assert (rec.platform, rec.category) == (platform, category), rec.reason
    assert recommender.without_opening(text) != text
    assert recommender.without_opening("喂喂你好") == "喂喂你好"       # all there is


def test_without_its_model_it_answers_by_the_catalog_terms_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(recommender, "corpus_dir", lambda: tmp_path)   # no corpus: no model
    monkeypatch.setenv("HOTLINE_MODEL_DIR", str(tmp_path / "models"))
    assert "no model built" in recommender.Recommender(CATALOG).load_now().error
    rec = recommender.Recommender(CATALOG, train_if_missing=True).load_now()
    assert rec.model is None and "CorpusError" in rec.error
    answer = rec.recommend(text="路口交通信号灯坏了")
    assert (answer.platform, answer.category, answer.method) == ("110", "road_traffic", "rules")
    assert "[by the catalog's terms: CorpusError" in answer.reason
    assert recommend(CATALOG, text="路口交通信号灯坏了").category == "road_traffic"


def test_cli_explains_its_answer():
    out = subprocess.run([sys.executable, "-m", "hotline_link.cli", "recommend",
                          "楼下", "一股煤气味，邻居敲门没人应"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "平台 platform:   110" in out.stdout
    assert "紧急 emergency:  是 yes - emergency: gas (煤气味)" in out.stdout
    assert "候选 alternatives: " in out.stdout and "依据 why:" in out.stdout


def test_pinyin_is_read_as_the_chinese_it_spells_and_english_stays_english():
    """The reading by a table of words by their pinyin: syllables spaced, run together or
    parted by an apostrophe or a hyphen, tone marks (composed or not) and tone numbers, ü typed
    as v, digits kept, either keyboard's punctuation; not a text with a word no syllables make,
    nor one half of whose words are the corpus's English, nor one of fewer than 4 letters."""
    words = {"you": ("有", -5.0), "ren": ("人", -6.0), "youren": ("有人", -7.0),
             "tiao": ("跳", -8.0), "lou": ("楼", -7.0), "tiaolou": ("跳楼", -9.0),
             "le": ("了", -4.0), "lv": ("绿", -9.0), "deng": ("灯", -8.0), "a": ("啊", -9.0),
             "n": ("嗯", -9.0), "gu": ("股", -9.0), "wo": ("我", -5.0), "ma": ("吗", -6.0),
             "man": ("慢", -9.0)}
    table = reading.PinyinTable({k: (v,) for k, v in words.items()},
                                english=frozenset({"a", "you", "man"}))
    assert reading.from_pinyin("you ren tiao lou le!", table) == "有人跳楼了！"
    assert reading.from_pinyin("YouRen Tiao-Lou", table) == "有人跳楼"
    assert reading.from_pinyin("yǒu rén tiào lóu, 3 lou", table) == "有人跳楼，3楼"
    assert reading.from_pinyin("you3 ren2 tiao4 lou2", table) == "有人跳楼"
    assert reading.from_pinyin("you ren tiao lou，ma？", table) == "有人跳楼，吗？"
    decomposed = "yo\u0301u ren tiao lou"                  # ó as o and a combining accent
    assert reading.from_pinyin(decomposed, table) == "有人跳楼"
    assert reading.from_pinyin("lǜ deng", table) == reading.from_pinyin("lv deng", table) == "绿灯"
    for text in ("help me", "fire in the kitchen", "you ren tiao lou 了", "le", "",
                 "a man",                              # the corpus's English, every word of it
                 "a gun",                              # "gun" is no syllables: 嗯 is not alone
                 "wo" * 600):                          # longer than any description
        assert reading.from_pinyin(text, table) is None, text
    assert table.spells("youren") and not table.spells("yourn") and not table.spells("gun")


def test_the_words_around_a_syllable_choose_among_its_homophones():
    """Each key keeps its likeliest words; which one is read is scored after the word before
    it, by what followed that word in the corpus (smoothed towards the word's own probability),
    so the commoner homophone wins only where the context does not say otherwise."""
    table = reading.PinyinTable(
        {"ta": (("他", -5.0),), "yao": (("要", -5.0),), "sha": (("啥", -7.0), ("杀", -8.0)),
         "wo": (("我", -5.0),), "you": (("有", -5.0),), "ren": (("人", -6.0),),
         "zai": (("在", -5.0),), "dajia": (("大家", -6.0), ("打架", -7.5)), "hao": (("好", -5.0),),
         "da": (("大", -6.0),), "jia": (("家", -6.0),)},
        follows={"要": (40, {"杀": 12, "去": 20}), "人": (50, {"打架": 9, "在": 30}),
                 "在": (60, {"打架": 10})})
    assert reading.from_pinyin("ta yao sha wo", table) == "他要杀我"
    assert reading.from_pinyin("wo sha", table) == "我啥"       # after a word of no counts
    assert reading.from_pinyin("you ren zai da jia", table) == "有人在打架"
    assert reading.from_pinyin("da jia hao", table) == "大家好"
    # A word followed by others fewer than 3 times says nothing of the next one.
    words = {"ta": (("他", -5.0), ("它", -8.0)), "zai": (("在", -4.0), ("再", -7.0))}
    assert reading.from_pinyin("ta zai", reading.PinyinTable(
        words, follows={"它": (2, {"再": 2})})) == "他在"
    assert reading.from_pinyin("ta zai", reading.PinyinTable(
        words, follows={"它": (30, {"再": 30})})) == "它再"
    # Without the counts of what follows what, each key reads as its likeliest word.
    plain = reading.PinyinTable(table.words)
    assert reading.from_pinyin("ta yao sha wo", plain) == "他要啥我"
    assert reading.from_pinyin("you ren zai da jia", plain) == "有人在大家"


def test_the_answer_says_how_it_read_a_description_written_otherwise(engine):
    assert engine.recommend(text="个小孩不见了，刚才还在公园").read_as == ""
    rec = engine.recommend(text="個細路唔見咗，頭先仲喺公園")
    assert rec.read_as == "个小孩不见了，刚才还在公园" and "小孩不见了" in rec.emergency_why
    out = subprocess.run([sys.executable, "-m", "hotline_link.cli", "recommend", "--json",
                          "沒有 人 受傷"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["read_as"] == "没有人受伤"
    assert engine.recommend(text="you ren tiao lou").read_as == "有人跳楼"
    # Homophones read by the words around them, as the corpus says them: 杀, not the commoner
    # 啥; 打架 after 在, 大家 before 好.
    for typed, read in (("ta yao sha wo", "他要杀我"), ("you ren zai da jia", "有人在打架"),
                        ("jia li you mei qi wei", "家里有煤气味")):
        rec = engine.recommend(text=typed)
        assert (rec.read_as, rec.platform, rec.emergency) == (read, "110", True), (typed, rec)
    assert engine.recommend(text="da jia hao").read_as == "大家好"
    assert engine.recommend(text="Someone is on the roof edge").read_as == ""
    # English whose every word is syllables too: the corpus's English tells it from pinyin
    # (read as pinyin, "a gun" was 啊滚 and no emergency).
    for text in ("a gun", "danger", "a woman here", "he ran!", "one man on a lake"):
        rec = engine.recommend(text=text)
        assert (rec.read_as, rec.platform, rec.emergency) == ("", "110", True), (text, rec)
    assert engine.recommend(text="police").read_as == ""


def test_cross_validation_answers_each_training_description_by_a_model_that_never_saw_it(
        monkeypatch):
    from bench import recommender as bench_recommender

    samples = recommender.read_corpus(CATALOG)[::8]
    fitted_on: list[set[str]] = []
    real_train = recommender.train

    def train(catalog, fit_on, *args, **kwargs):
        fitted_on.append({s.text for s in fit_on})
        return real_train(catalog, fit_on, *args, **kwargs)

    monkeypatch.setattr(recommender, "train", train)
    out = bench_recommender.cross_validate(CATALOG, samples)
    training_part = [s for s in samples if not s.held_out]
    assert out["n"] == sum(s.label != UNCLEAR for s in training_part)
    assert len(fitted_on) == bench_recommender.CV_FOLDS
    for s in samples:
        left_out = sum(s.text not in texts for texts in fitted_on)
        assert left_out == (bench_recommender.CV_FOLDS if s.held_out else 1), s.where
    assert 50 < out["platform_accuracy_pct"] <= 100 and out["emergency_recall_pct"] > 50


def test_a_language_the_model_hardly_reads_is_left_to_an_agent_not_to_12345(engine):
    """Words are counted whole: jieba parts "días" at the í, and the model knows the pieces (so
    Vietnamese read 95 % known by the features); a Chinese address quoted is no word of the
    language around it; Chinese text is not measured so."""
    model = engine.model
    assert model.foreign_words_known("我家门口的路灯坏了三天了") is None
    assert model.foreign_words_known("Hàng xóm tôi không mở cửa hai ngày rồi") < 0.5
    korean = "옆집에서 타는 냄새가 나고 아무도 대답을 안 해요"
    assert model.foreign_words_known(korean + "（望京）") == model.foreign_words_known(korean)
    assert model.foreign_words_known("The street light outside my house is broken") == 1.0
    for text in ("La farola delante de mi casa lleva tres días apagada",
                 "Quiero saber cómo renovar mi visado de trabajo",
                 korean + "（望京）"):
        rec = engine.recommend(text=text)
        assert rec.platform != "12345", rec.reason
        assert rec.emergency or "it cannot rule one out" in rec.emergency_why, rec.emergency_why
    rec = engine.recommend(text="How do I renew my work visa?")
    assert rec.platform == "12345", rec.reason


def test_the_bench_counts_where_the_emergencies_it_missed_went(tmp_path):
    """A missed emergency answered 110 still reaches the police, "not sure" an agent; answered
    12345 it waits in a queue of ordinary calls: the figure that counts those."""
    from types import SimpleNamespace

    from bench import recommender as bench_recommender

    answers = {"楼下有人打架": ("110", False), "河边有个人一动不动": ("12345", False),
               "屋里好大的烟": (None, False), "有人持刀": ("110", True), "路灯坏了": ("12345", False),
               "no entiendo nada": (None, False), "Hay humo": ("12345", False)}

    def answer(text):
        platform, emergency = answers[text]
        return SimpleNamespace(platform=platform, emergency=emergency, category=None, reason="")

    samples = [recommender.Sample(label, flag, text, f"x.tsv:{n}") for n, (label, flag, text) in
               enumerate([("public_order", True, "楼下有人打架"),
                          ("police_first_help", True, "河边有个人一动不动"),
                          ("emergencies", True, "屋里好大的烟"), ("public_order", True, "有人持刀"),
                          ("public_facilities", False, "路灯坏了")], start=2)]
    got = bench_recommender.evaluate(CATALOG, samples, answer)
    assert got["emergency_tp_fp_fn"] == [1, 0, 3] and got["missed_emergencies_to_12345"] == 1
    path = tmp_path / "languages.tsv"
    path.write_text("language\temergency\ttext\nes\t1\tHay humo\nes\t0\tno entiendo nada\n"
                    "zh\t1\t有人持刀\nzh\t0\t路灯坏了\n", encoding="utf-8")
    spoken = bench_recommender.languages(path, answer)
    assert (spoken["caught"], spoken["missed_to_12345"], spoken["harmless_to_agent"]) == (1, 1, 1)


def test_the_emergency_models_learn_the_flags_their_language_allows(
        monkeypatch, tmp_path):
    samples = recommender.read_corpus(CATALOG)[::10]
    assert {s.batch for s in samples} >= {"1", "9", "12", "17"}
    fits: list[list[str]] = []
    real_fit, real_fit_category = recommender.fit, recommender.fit_category

    def fit(docs, labels, c, dense):
        fits.append(list(labels))
        assert dense.shape == (len(labels), embedding.DIM)   # every model reads the embedding
        return real_fit(docs, labels, c, dense)

    def fit_category(docs, labels, c, dense):
        fits.append(list(labels))
        assert dense.shape == (len(labels), embedding.DIM)
        return real_fit_category(docs, labels, c, dense)

    monkeypatch.setattr(recommender, "fit", fit)
    monkeypatch.setattr(recommender, "fit_category", fit_category)
    model = recommender.train(CATALOG, samples, "t", tmp_path)
    category_labels, chinese_flags, all_flags = fits
    training = [s for s in samples if not s.held_out]
    assert len(category_labels) == len(training) + sum(len(c.examples) for c in CATALOG.categories)
    assert all_flags == ["1" if s.emergency else "0" for s in training]
    # the emergency model for Chinese text learns no foreign batch; the one for text in Latin
    # letters learns them all, and answers for such text only
    assert chinese_flags == ["1" if s.emergency else "0" for s in training
                             if s.batch not in recommender.FOREIGN_BATCHES]
    assert len(chinese_flags) < len(all_flags)
    english, chinese = "my neighbour is lying on the floor", "我邻居倒在地上了"
    feats = recommender.features(english, model.dictionary)
    assert model.probabilities(english).emergency == pytest.approx(
        model.emergency_foreign.probabilities(feats, embedding.vector(english))["1"])
    feats = recommender.features(chinese, model.dictionary)
    assert model.probabilities(chinese).emergency == pytest.approx(
        model.emergency.probabilities(feats, embedding.vector(chinese))["1"])
    assert not classifier.foreign("我在KTV门口，苏E9C6Q1的车撞人了")
    assert recommender.Sample("other", False, "x", "other.9.tsv:3").batch == "9"
    assert recommender.Sample("other", False, "x", "other.tsv:3").batch == "1"


def test_the_nearest_descriptions_are_the_training_parts_and_are_kept_with_the_model(
        monkeypatch, tmp_path):
    import numpy as np

    samples = recommender.read_corpus(CATALOG)[::20]
    model = recommender.train(CATALOG, samples, "t", tmp_path)
    training = [s for s in samples if not s.held_out]
    near = model.neighbours
    assert near.vectors.shape == (len(training), embedding.DIM)
    assert near.emergency.tolist() == [s.emergency for s in training]
    assert sorted(near.texts.values()) == sorted(s.text for s in training if s.emergency)
    held = [s.text for s in samples if s.held_out]
    assert held and not set(held) & set(near.texts.values())     # never a held-out description
    told = [s for s in training if s.emergency][:20]
    for s in told:          # a training emergency's nearest emergency is itself
        got = model.probabilities(s.text).nearest
        assert got.example == s.text and 1 <= got.emergencies <= NEAREST
    recommender.save(model, tmp_path)
    monkeypatch.setattr(recommender, "stamp", lambda *args, **kwargs: "t")
    monkeypatch.setenv("HOTLINE_MODEL_DIR", str(tmp_path))
    loaded = recommender.load(CATALOG)
    assert isinstance(loaded.neighbours.vectors, np.memmap)      # mapped, not read into memory
    for s in training[:40]:
        assert loaded.probabilities(s.text).nearest == model.probabilities(s.text).nearest
    np.save(tmp_path / "meanings-t.npy", near.vectors[:-1])     # one description short
    with pytest.raises(ValueError, match=r"meanings-t\.npy: .* meanings for .* descriptions"):
        recommender.load(CATALOG)
