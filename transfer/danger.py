"""Is a described matter an emergency? (R4) Pure: no I/O.

The judgement is kept apart from the category model on purpose: a category can be wrong and the
caller still reaches an agent, a missed emergency cannot be taken back. It errs on the side of
danger: any cue of danger to life, property or public safety makes the matter an emergency unless
that very cue is negated ("没有人受伤"), put in a condition ("万一着火怎么办"), or said to be over
("火早灭了", "孩子已经找到了"). A cue the text does not clear stands, however the rest reads.

Every answer names the cues it found and why any of them was set aside, so an agent (and
``hotline-link recommend``) can see why a matter was judged an emergency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Danger cues by kind, as regular expressions over the description. Kinds name what is in danger,
# for the explanation and for the "it is over" phrases that may clear them.
_PEOPLE = (r"(?:孩子|小孩|小朋友|娃|儿子|女儿|闺女|孙子|孙女|弟弟|妹妹|老人|老太太|老大爷|老头|"
           r"老爷子|爷爷|奶奶|姥姥|姥爷|外婆|外公|父亲|母亲|我爸|我妈|老伴|家人|丈夫|"
           r"老公(?!寓)|妻子|老婆|学生|病人|行人|路人)")
# Anyone who can fall, sink or be swept away (people, not phones or lids).
_SOMEONE = (r"(?:人|孩子|小孩|娃|老人|老太太|老太|老大爷|老头|小伙|姑娘|男的|女的|学生|"
            r"他|她|工人|大叔|大爷|大妈|大娘|阿姨|叔叔|男孩|女孩|孕妇|司机|骑手|乘客|游客|钓鱼的|"
            r"儿童|幼儿|婴儿|宝宝)")
CUES: dict[str, tuple[str, ...]] = {
    "fire": (r"(?:焦|糊)(?:的)?味[^。]{0,12}(?:配电|电箱|电线|插座|电表)",
             r"(?:配电|电箱|电线|插座|电表)[^。]{0,8}(?:焦|糊)(?:的)?味",
             r"(?:燎|烧)到(?:了)?[^，。,]{0,4}(?:房|屋|家|柴火?垛|草垛|棚)",
             r"(?:屋|室|楼|教室|房间|家|车厢)[^。]{0,8}(?:烧塑料|烧焦|焦糊|烧电线)(?:的)?(?:味|气味)", r"着火", r"起火", r"失火",
             r"火灾", r"(?:冒|窜|蹿)(?:出)?火苗",
             r"(?:门把手|门|墙)(?:都)?烫手", r"熏得[^，。,]{0,4}(?:喘|睁不开)", r"火苗(?:窜|蹿|往上)", r"火光", r"火势",
             r"大火", r"烧起来",
             r"烧着了", r"(?:仓库|房子|屋|楼|车|厂|店|棚|山|林子?|草垛|柴堆|货)[^，。,]{0,2}着了(?!急)",
             r"一股烧焦", r"噼里啪啦[^。]{0,10}(?:响|烧)",
             r"(?:墙头|天|窗户|屋里)[^，。,]{0,4}(?:都)?(?:红了|映红|通红)", r"着了火", r"火烧", r"越烧越(?:旺|大)",
             r"火(?:很|越来越|特别)(?:大|旺)", r"点着", r"引着", r"烟(?:已经)?起来了"),
    # Smoke apart from fire: a chimney or a rubbish fire that smokes every evening is pollution.
    "smoke": (r"冒(?:黑|浓|白)?烟", r"浓烟", r"黑烟(?:冲|滚|直冒|往上)", r"烟(?:很|特别|好)大",
              r"(?:满屋|屋里|楼道|楼里)(?:都是|全是)?烟"),
    "explosion": (r"爆炸", r"轰(?:的|隆)?(?:一声|一下)", r"房子(?:没了|炸没)",
                  r"(?<!头都要)(?<!头要)(?<!头都快)(?<!头快)(?<!气)炸了", r"爆燃", r"(?<!开得)(?<!放得)巨响"),
    "gas": (r"(?:煤气|燃气|天然气|液化气|瓦斯)(?:的)?(?:臭|怪|异)?(?:味|泄[漏露]|漏了|在漏|漏气)",
            r"(?:怪|臭|异)味[^。]{0,8}(?:像|好像|像是|应该是)(?:是)?(?:煤气|燃气|天然气|液化气)",
            r"(?:家|屋|厨房|楼道|楼里|房间)[^，。,]{0,8}臭鸡蛋味", r"漏气", r"气罐.{0,4}漏",
            r"(?:煤气|燃气|天然气)管.{0,6}(?:嘶|呲|漏|破)",
            r"(?:煤气|燃气|天然气)管.{0,10}(?:断|裂)", r"嘶嘶.{0,6}(?:冒|漏)", r"嘶嘶", r"咝咝", r"丝丝(?:地)?(?:响|声)",
            r"(?:燃气|煤气|天然气)[^。]{0,12}(?:有味|味儿)",
            r"(?:燃气|煤气|天然气|瓦斯)(?:浓度)?报警(?:器)?[^，。,]{0,4}(?:叫|响)",
            r"气罐[^，。,]{0,4}(?:滋滋|嘶嘶|响|漏)",
            r"(?:一屋子|满屋子?|屋里|整个屋)(?:都是)?(?:气味|煤气|燃气|天然气)",
            r"关了还有味", r"味(?:道)?越来越(?:大|浓|重|冲)"),
    "chemical": (r"罐车[^，。,]{0,4}漏了?[，,]?[^。]{0,4}(?:味|气|烟|冒)", r"危化品[^。]{0,10}(?:泄|漏|洒|翻|冒|着火|爆)",
                 r"毒气", r"化学品.{0,6}(?:泄|漏|洒)",
                 r"刺鼻.{0,24}(?:头晕|晕|呕|吐|喘)",
                 r"(?:闻|吸)了?.{0,6}(?:头晕|头发晕|发晕|恶心|想吐)",
                 r"(?:头晕|晕倒).{0,12}(?:气味|味道)", r"中毒", r"一氧化碳", r"喘不上气",
                 r"胸口闷", r"眼睛(?:都)?(?:疼|辣|睁不开)", r"咳(?:得(?:厉害|不行|很)|个不停)",
                 r"(?:臭气|气味|味道)[^。]{0,20}(?:头晕|站不稳|恶心|想吐)",
                 r"头晕恶心", r"(?:怪|臭|异|刺鼻的?)味[^。]{0,20}(?:头晕|恶心|想吐|喘不上)", r"炭火|炭盆|烧炭"),
    "trapped": (r"困了(?:[一二三四五六七八九十几两]|好几)", r"被困", r"困在", r"困住", r"困(?:了)?人",
                r"(?:有人|人)(?:还)?没(?:有)?出来", r"出不来", r"关在(?:里面|屋里|车里)",
                r"锁在(?:里面|屋里|车里)", r"卡在(?:里面|中间|下面|缝|电梯|门)", r"卡住了",
                r"压在(?:下面|底下)",
                r"(?:底下|下面|下边)压着(?:个|一个|几个|好几个)?人", _SOMEONE + r"[^，。,]{0,6}(?:被)?埋(?:在|了|住)",
                r"(?:人|我|我们|孩子|他|她|老人)[^，。,]{0,10}出不去", r"(?<![猫狗鸟])(?:人在|站在|爬到)车顶",
                r"(?<!钥匙)锁(?:在)?(?:车|屋|家|仓库|房间|厕所|卫生间|地下室)里", r"关在(?![^，。,]{0,6}笼)[^，。,]{0,8}里",
                r"放我出去", r"没(?:有)?上来", r"爬不(?:出|上)(?:来|去)", r"被(?:反)?锁在",
                _SOMEONE + r"[^，。,]{0,8}下不来(?!楼)",
                r"(?:人|客|孩子|老人)[^，。,]{0,6}没(?:有)?下来", r"无法(?:自行)?(?:下车|出来|脱身|脱出)",
                r"压住(?:了)?(?:一名|一个|个|两名|几名)?[^，。,]{0,6}(?:人|工|身|腿)",
                r"下不了车", r"下不去(?!脚)", r"没见(?:人)?上来", r"卷进去", r"卷入(?:机器|机|了)?", r"卷了进去",
                r"压在(?:了)?[^，。,]{0,6}(?:下面|底下|下边|下)(?=[，。,！!？?]|$)",
                r"(?:机器|设备)[^，。,]{0,4}关不(?:掉|了|住)",
                r"(?:塌|倒)[^。]{0,10}(?:下面|底下)有[^，。,]{0,4}(?:人|工人)",
                r"听(?:到|见)[^，。,]{0,4}(?:呼喊|喊救|呼救|在喊)", r"失去联系", r"下井[^。]{0,10}(?:无|没)(?:人)?应答",
                r"(?:塞|关|锁)(?:进|到|在)?(?:了)?后备箱",
                r"(?:停|卡|吊)在半空", r"(?:车|屋|房)里(?:好像)?还有人", r"电梯[^，。,]{0,4}卡", r"关着[^，。,]{0,4}人"),
    "water": (r"(?:船|艇|筏)(?:子)?(?:翻了|沉了|在沉)", r"(?:湖|河|江|塘|水|海|池)里[^，。,]{0,4}(?:扑腾|挣扎|呼救)", r"落水",
              r"溺水", r"淹死", r"(?:船|车)(?:里)?进水",
              r"水(?:已经)?(?:没过|到了?)(?:腰|胸|脖子)",
              _SOMEONE + r"[^，。,]{0,6}(?:掉|落|跌|摔|滑|踩空|坠)(?:进|到|在|入|下)?[^，。,]{0,4}"
              r"(?:河|湖|水|塘|江|井|沟|坑|洞|下水道|窨井)",
              _SOMEONE + r"[^，。,]{0,8}(?:掉|摔|跌)进去", r"被(?:水|洪水)冲", r"冲走",
              r"水里.{0,4}(?:扑腾|挣扎|呼救)", r"(?:车|人)(?:在|泡在)水里", r"水里熄火",
              r"被(?:水)?冲倒", r"(?:往|顺着)[^，。,]{0,6}漂",
              r"(?:带|拖|拽|卷)(?:下|进)(?:了)?(?:水|河|湖|江)"),
    "fall": (r"(?:孩子|幼童|小孩|娃|儿童)[^。]{0,12}(?:阳台|窗台|护栏)[^，。,]{0,4}(?:爬|攀)",
             r"(?:阳台|窗台|护栏)(?:边|上)?(?:攀爬|爬来爬去)", r"跳楼", r"要跳", r"想跳", r"跳下去", r"跳河", r"跳桥", r"坠楼",
             r"坠落",
             _SOMEONE + r"[^，。,]{0,6}(?:掉|摔|跌)下(?:来|去)",
             r"(?:楼顶|天台|楼顶边|窗台|桥上|栏杆外).{0,8}(?:边|(?<!基)站|坐|爬)",
             r"(?<![猫狗鸟])(?:站|坐|爬)(?:在|到).{0,6}(?:楼顶|天台|窗台|栏杆外|桥栏)", r"跳下(?:来|去)",
             r"(?<![猫狗鸟])爬(?:到|上)[^，。,]{0,8}(?:塔吊|楼顶|天台|顶上|桥上|高处|脚手架)",
             r"跳江", r"挂在[^，。,]{0,8}(?:窗|阳台|栏杆)", r"(?:窗|阳台)(?:外侧|外沿|外面)",
             r"往下拍", r"爬(?:到|上)(?:了)?[^，。,]{0,4}(?:窗户|窗台|阳台外|护栏外)"),
    "self_harm": (r"(?<!私)自杀(?![猪鸡鸭羊牛])", r"轻生", r"不想活", r"寻死", r"割腕", r"喝药", r"吃了.{0,4}安眠药",
                  r"上吊", r"活不下去", r"安眠药", r"遗书", r"往水里走",
                  r"(?:开|放)煤气", r"一起死", r"(?:喝|吃|服)(?:了)?[^，。,]{0,3}农药", r"离开这个世界", r"了结自己",
                  r"跳下去算了", r"(?:让|叫)我(?:以后)?(?:好好)?照顾好", r"遗言", r"交代后事",
                  r"(?:配文|发来|发了)[^。]{0,12}(?:再见了|永别|别找我|对不起大家)",
                  r"往下一跳", r"(?:你|你们)?别劝我", r"(?:你们|你)别管我了?",
                  r"一了百了", r"(?:江|河|湖|海)边[^，。,]{0,6}(?:寻|了断|结束)",
                  r"(?:灶|煤气|燃气)[^。]{0,6}(?:打开|开着)[^。]{0,10}(?:没点|门窗(?:都)?关)"),
    "missing": (r"被(?:数|几|一伙|一帮|两|三|陌生|不明身份的?)(?:个)?人(?:强行)?(?:抱走|拐走|带走|架走|拖走)",
                r"(?:从昨天|一天|两天|好几天|一整天)[^。]{0,8}电话(?:都)?不接", r"(?:还|都)没(?:有)?(?:影|人影)(?!响)",
                _PEOPLE + r".{0,10}(?:不见了|找不到了|找不着|走丢|走失|失踪|失联|没回家|没有回家|一直没回来)",
                r"(?:走丢|走失|失踪)", r"被(?:人)?(?:抱走|拐|带走)", r"拐卖", r"人贩子",
                r"(?:到现在|至今|一直|还)(?:都|也|还)?没(?:有)?(?:回(?:家|来)|联系上|找到)",
                r"迷路", r"(?:至今|到现在|一直|仍)未(?:归|回家|到家|返回)",
                r"找不(?:到|着)(?:我家|我的|我)?"
                r"(?:孩子|娃|小孩|儿子|女儿|孙子|孙女|老人|老伴|爸|妈|爷爷|奶奶)",
                r"找不(?:着|到)(?:家|回家)", r"这是哪(?:儿|里)?(?:啊|呀|？|\?)",
                # A lost old person: cannot say where home is, a name tag round the neck.
                r"(?:问|说)[^，。,]{0,6}(?:啥|什么|哪)?都(?:答|说)不(?:上来|清|出来)",
                r"(?:脖子上|身上|胸前)挂(?:着)?(?:个|一个|块)?(?:牌子|卡片)",
                r"(?:把)?(?:孩子|娃|小孩|老人)[^，。,]{0,4}落(?:下|在)(?:了)?",
                r"(?:一转眼|一眨眼|转身|一会儿).{0,6}(?:就)?(?:不见|没影|跑没|找不到)",
                r"跑(?:没|丢)了",
                r"(?:电话|手机).{0,8}(?:没人接|打不通|关机).{0,20}(?:敲门|叫门|不开|怕|出事)",
                r"(?:敲门|叫门|砸门).{0,6}(?:不开|没人应|不应|无应答|无人应|没反应|没动静|无回应|没回应)",
                # Someone who cannot say where they live, or lost touch, or taken by a stranger.
                _PEOPLE + r"[^。，,]{0,30}(?<!对方)(?<!对方现已)(?<!对方已)失联",
                r"(?:外出|出门|离家|上学|放学|玩耍|游泳|上山)[^。]{0,12}失联", r"没(?:有)?归队", r"神志不清|意识不清",
                r"被(?:不明身份|陌生|不认识)[^，。,]{0,6}(?:接走|带走|领走|抱走)",
                r"问(?:他|她|老人|他们)?[^，。,]{0,4}(?:去哪|住哪|家在哪)[^。]{0,12}"
                r"(?:光笑|说不(?:出|清|上来)|不知道|答不上|糊涂)",
                r"(?:牛奶|报纸|快递|外卖)[^。]{0,6}(?:都)?没(?:拿|取)",
                r"(?:[一二两三四五几]|好几)天(?:都)?没(?:有)?(?:开门|出门|见(?:着|到)?人|露面|动静)",
                r"怕(?:她|他|老人|孩子)(?:出事|想不开)",
                r"(?:痴呆|阿尔茨海默|糊涂|智力障碍|智障).{0,20}(?:没回|不见|找不到|走丢|出门|跑出去)",
                r"(?:她|他|老人|孩子)(?:还|一直)?没(?:有)?回来",
                r"(?:小时|半天|一天|一宿|一夜|一晚上)(?:了)?(?:还|都)?没(?:有)?回(?:来|家)",
                r"找不(?:到|着)(?:妈妈|爸爸|家人|家长|大人)",
                r"出(?:去|门)[^，。,]{0,6}(?:就)?没(?:有)?回(?:来|家)", r"没到家", r"走散",
                r"说不清(?:楚)?(?:自己)?(?:家|从哪|在哪)", r"没找(?:着|到)", r"离家出走",
                r"(?:家在哪|住哪)[^，。,]{0,6}说不清",
                r"(?:孩子|儿子|女儿|侄子|外甥|老人|爸|妈|老公(?!寓)|老婆|家人|同学|室友)[^。]{0,20}联系不上",
                r"(?:船|渔船|车)[^。]{0,12}(?:联系不上|失联)"),
    "injury": (r"受伤", r"受了伤", r"流血", r"出血", r"血流", r"满身是血", r"一身血", r"头破",
               r"骨折", r"重伤", r"伤得", r"砸伤", r"烫伤", r"烧伤", r"咬伤", r"撞伤", r"伤者",
               r"伤员", r"送医院", r"叫(?:了)?(?:救护车|120)", r"打(?:了)?120",
               r"流了?(?:好多|很多|一地|一身|不少)血", r"连着摔", r"摔了[^，。,]{0,3}个", r"摔倒",
               r"起不来", r"(?:血)?(?:一直)?止不住", r"血流不止",
               r"(?:全是|都是|一身|满身|满脸)血(?![水丝])", r"跌倒", r"无法起身", r"站不起来",
               r"(?:腿|胳膊|手|脚|骨头|肋骨)(?:好像|可能)?(?:摔|撞|砸|打)?断了",
               r"头(?:被)?(?:打|砸|撞|磕)?破了", r"(?:一大片|全是|都是|满地(?:是)?)红(?:的)?(?![灯色])", r"一[滩摊]血",
               r"(?:胳膊|手|腿|头|脸|身上|脖子)[^，。,]{0,6}(?:开了|划了|割了|拉了)(?:一道|一个|个)(?:大)?口子"),
    # A meter, card or machine that does not respond is a supply matter ("插上表没反应"); a phone
    # nobody answers (打手机没反应) is not.
    "unconscious": (r"(?:人|他|她)[^，。,]{0,2}不动了", r"(?:马路|路)(?:当中|中间|上)躺着", r"倒了[^。]{0,6}不说话", r"昏迷",
                    r"晕倒", r"晕过去", r"昏(?:死)?过去", r"晕死过去", r"不省人事",
                    r"(?<![表卡灯屏键钮器闸])(?<![洗衣取款售货柜员印视]机)没(?:有)?(?:意识|反应|呼吸)",
                    # "没气了" of a person; of a meter, a bottle or a tyre it is a supply matter.
                    _SOMEONE + r"[^，。,]{0,4}(?:快|已经)?没(?:有)?气了", r"(?:好像|已经|快|都)没(?:有)?气了",
                    _SOMEONE + r"(?:突然|晕|摔)?倒在(?:了)?(?:地|路|楼道|楼梯|门口|屋|家|卫生间|厕所|床|电梯|街)",
                    r"抽搐", r"休克", r"倒在地上", r"倒地不起", r"叫不醒", r"快不行了",
                    r"心脏骤停", r"(?:躺|睡)在(?:地上|路上|路中间|马路上|快车道|车道|铁轨)",
                    r"(?<![堵车])(?<!堵得)一动不动", r"躺着不动", r"呼之不应", r"倒地",
                    r"(?:拍|叫|喊|摇|推)(?:他|她)?(?:都|也)?不(?:睁眼|醒|应|动|吭声)",
                    r"(?:他|她|人)(?:自己)?躺(?:在)?地上", r"(?:马路|路)中间[^。]{0,6}(?:躺|睡)", r"不睁眼",
                    r"(?:无|没有?)(?:自主)?呼吸", r"(?:歪|栽)(?:倒)?在[^，。,]{0,6}(?:地|沙发)",
                    r"(?:已经|都)不动了?", r"没(?:有)?(?:再)?起来",
                    r"(?:路中间|马路中间|马路上|快车道|车道上?)(?:有个人?)?(?:躺|睡)(?:着)?",
                    r"(?:躺|睡)(?:在)?(?:马路|路中间|马路中间|快车道|车道)"),
    "medical": (r"(?:高烧|发烧|孩子|小孩|宝宝)[^。]{0,6}抽(?:筋|风)", r"抽风", r"(?:游泳|水里)[^。]{0,6}抽筋",
                r"(?:呼吸机|制氧机|氧气机)[^。]{0,16}(?:停|没电|只剩|断)", r"(?:停电|断电)[^。]{0,12}(?:呼吸机|制氧机|氧气机)",
                r"抽过去了|背过气", r"嘴(?:巴)?(?:也|都)?歪", r"抽抽|抽搐", r"嘴唇(?:都|发)?(?:紫|青)",
                r"(?:好多|很多|几十|十几|一群|多名|三十|二十|[几数]名|[几数]个)[^。]{0,12}"
                r"(?:相继|都|一起|同时)[^，。,]{0,4}(?:呕吐|吐|腹痛|拉肚子|晕)",
                r"站立不住|站不起来了",
                r"(?:怀孕|孕妇|快生了|要生了)[^。]{0,12}(?:疼|水|血|出来)", r"羊水破", r"要生了",
                r"过敏[^。]{0,12}(?:喉咙|喘|肿|说不出)", r"喉咙(?:很|好|发)?紧",
                r"半边(?:身子|脸|身体)(?:都)?(?:没劲|不能动|动不了|麻)", r"说话含糊|口齿不清",
                r"噎(?:住|着)", r"卡(?:住)?(?:了)?(?:喉咙|嗓子)", r"说不出话", r"不喘气",
                r"(?:喘不过气|喘不上来|呼吸困难)", r"(?:脸|嘴唇|嘴)(?:色)?(?:都)?(?:憋得)?(?:发青|发紫|铁青|紫了|青了)",
                r"脸(?:色)?(?:都)?(?:发白|白了)", r"站不住", r"身子(?:都)?软", r"一直(?:想|犯)睡",
                r"胸(?:口)?(?:闷|疼|痛)", r"心口(?:疼|痛)", r"心脏病", r"犯病", r"发病",
                r"(?:当糖|误)(?:吃|喝|服)", r"吞了", r"冒冷汗", r"答非所问", r"上吐下泻",
                r"半(?:拉|边)(?:身子|身体|胳膊|腿)[^，。,]{0,4}(?:不听使唤|没劲|不能动|动不了|麻)",
                r"(?:脸|嘴唇|嘴)(?:色)?(?:都)?憋(?:得)?(?:发)?(?:青|紫)", r"吐奶|呛奶",
                r"(?:婴儿|新生儿)[^。]{0,8}不哭", r"(?:野)?蘑菇[^。]{0,16}(?:吐|泻|晕|花|冒汗)",
                r"农药味", r"看东西(?:都)?(?:是)?花", r"喘不上", r"雷劈|被雷(?:击|打)(?:中|了)?",
                r"(?:倒|趴|躺)在[^，。,]{0,4}(?:不动|没动静)",
                r"(?:吃|喝|吞|服)(?:了)?(?:大半|半|一|整|好几|好多)(?:瓶|板|盒|把|片)"),
    "violence": (r"猥亵|非礼|性侵|强奸", r"进(?:了)?(?:小偷|贼)了|进了(?:小偷|贼)",
                 r"(?:小偷|贼)[^。]{0,8}(?:还在|没走|在里面|在屋里)",
                 r"被(?:人)?(?:跟踪|尾随)", r"打群架|群殴|斗殴", r"被(?:人)?绑(?:了|住|起来|在)", r"绑在(?:椅子|床|柱子|树)",
                 r"蒙着(?:眼|头)",
                 r"(?:人|老公|丈夫|儿子|女儿|孩子|他|她)[^，。,]{0,8}(?:被|让)[^，。,]{0,6}扣(?:住|下)(?:了)?",
                 r"冲进[^，。,]{0,6}(?:搬|抢|砸|打)", r"门被(?:踹|撬|砸)开",
                 r"(?:翻进|爬进|撬开)(?:了)?[^，。,]{0,6}(?:一户|家|屋|房|门)", r"开始砸(?![墙地砖瓷])|砸(?:路边|停着?)的车",
                 r"按在[^，。,]{0,4}上(?:打|揍)", r"通缉(?:的|犯)", r"持刀",
                 # Bricks to prop or cover something and a water gun are not weapons.
                 r"拿(?:着)?[^，。,把]{0,2}(?:刀|棍|棒|斧|(?<!破碎)锤|"
                 r"砖(?![^，。,]{0,4}(?:垫|压|堵|挡|盖|砌))|铁棍|(?<!水)枪)(?!把)",
                 r"砍人", r"砍伤",
                 r"捅(?:人|了|伤)", r"动刀", r"有枪", r"开枪", r"打人", r"殴打", r"(?<![狗猫])打架(?!叫)", r"斗殴",
                 r"群殴", r"互殴", r"打起来", r"正在打", r"往死里打", r"抢劫",
                 r"抢(?:包|钱|手机)", r"绑架", r"劫持", r"人质", r"家暴",
                 r"威胁要?(?:杀|砍|弄死|报复)", r"要杀", r"强奸", r"非礼", r"撬门", r"入室",
                 r"闯进", r"持械", r"砸(?:车|店|门|东西)", r"弄死",
                 r"杀了", r"汽油.{0,20}(?:烧|点|去|带|泼)",
                 r"(?:带|拎|提|买)(?:着|了)?.{0,6}汽油",
                 r"(?:塞|拖|拽|拉|推)(?:进|到|上)?[^，。,]{0,4}车里", r"揪着[^，。,]{0,6}头发",
                 r"撬[^，。,]{0,10}(?:门|锁|车|窗)", r"踹门",
                 r"躲(?:在)?(?:卫生间|厕所|屋里|房间|柜子|衣柜|床底|床下)", r"(?:他|他们|那人|那个人)(?:还)?在找我",
                 r"被(?:人)?扣(?:住|下|着)(?:了)?", r"撕票", r"卸(?:他|你|我)?(?:一条)?(?:腿|胳膊)",
                 r"(?:手机|钱包|包|钱)(?:都|也)?(?:被)?抢(?:走)?了", r"堵在(?:我)?家(?:里)?不走",
                 r"逼(?:我|他|她)[^，。,]{0,8}转",
                 r"拿(?:着)?[^，。,]{0,4}(?:抽|打|追)", r"追(?:出来|着打)",
                 r"打(?:她|孩子|老婆|媳妇)", r"不要打我",
                 # Someone still inside (an intruder), not what people do inside (吸毒).
                 r"(?:屋里|家里|里面|卧室)[^，。,]{0,6}(?:还有|有)(?:动静|人)(?=[，。,！!？?]|$)",
                 r"见人就打", r"打伤",
                 r"(?:持|抄|举|抡)(?:着|起)?[^，。,]{0,4}(?:啤酒瓶|酒瓶|凳子|椅子)",
                 r"(?:摸|掏|抽|抄)出(?:来)?(?:个|把|一把|根|一根)?[^，。,]{0,2}"
                 r"(?:刀|扳手|棍|棒|斧|锤|枪|砖|酒瓶)", r"扭(?:打)?成一团|扭打", r"明晃晃",
                 # A call that cannot say what it is: a takeaway "order", someone beside.
                 r"(?:他|他们|那个人|那人)(?:就)?在(?:我)?旁边[^。]{0,8}(?:不能|不方便)",
                 r"(?:说话|讲话)不方便", r"(?:他们|他)(?:在)?(?:盯着|看着)我", r"回答是或不是", r"你想的那样",
                 r"不让我(?:走|出门|出去|离开|下车)",
                 # A driver taking someone where they did not ask, doors locked.
                 r"(?:开往|往|开到)郊外[^。]{0,12}(?:不停|锁)", r"不停车[^。]{0,4}(?:车门|门)[^。]{0,3}锁",
                 r"(?:那个人|那人|有人|他)(?:还|一直)(?:跟着|尾随)我",
                 r"跟踪我", r"(?:他|那人|那个人)还在(?:这里|这儿|屋里|里面|门口)", r"进(?:了)?我的房间",
                 r"被(?:人)?关(?:着|起来|在)", r"收了我(?:的)?身份证", r"身份证(?:被)?(?:扣|收)",
                 r"(?:天天|一直|正在|还在)挨打", r"捂(?:住|着)?(?:她|他|我|孩子)?(?:的)?嘴", r"按在(?:地|床)上",
                 r"让我好看", r"(?:我|我们)(?:都)?不敢(?:动|出声|出去|吭声)", r"(?:一把|拿着?|带着?)(?:斧子|斧头|菜刀|砍刀)",
                 r"(?:猎|土|气|手)枪", r"(?:铁锹|棍子|锤子|砖头|扳手|铁棍|木棒)[^，。,]{0,4}(?:拍|打|砸|抡)",
                 r"追着[^，。,]{0,8}(?:砍|打)",
                 r"谁(?:过来|敢[^，。,]{0,4})(?:就)?(?:捅|砍|杀|弄死|打死|打)", r"掀(?:翻|了)[^，。,]{0,4}(?:桌|摊)",
                 r"(?:喊|叫|求)[^，。,]{0,3}(?:别|不要)(?:拿|砍|打|杀|捅|过来)", r"点(?:煤气罐|燃气罐|液化气)"),
    # A threat to kill, burn or blow up: whoever made it is at large, so neither "he left" nor
    # "he said it yesterday" makes it over.
    "threat": (r"剁(?:手|手指|脚|了你)", r"泼(?:了)?(?:汽油|柴油)|泼油", r"(?:包|箱|袋)[^。]{0,12}(?:嘀嗒|滴答)", r"炸药",
               r"雷管", r"爆炸物", r"引爆", r"(?:身上)?绑了(?:东西|炸)",
               r"(?:烧|炸)死(?:他|她|你|人|我|全家|他们|你们|一家)", r"(?:要|想|去)[^，。,]{0,4}(?:烧|炸)死",
               r"同归于尽", r"谁也别想好过", r"放(?:把)?火", r"报复社会", r"陪葬",
               r"(?:杀|砍|捅)(?:了)?(?:他|她|他们|你们|全家)", r"(?:开车|驾车)[^，。,]{0,4}(?:去)?撞人",
               r"(?:身上|头上|自己)[^，。,]{0,2}(?:浇|泼|倒)(?:了|满)?[^，。,]{0,2}(?:汽油|柴油|酒精)",
               r"把(?:楼|房子?|厂|店|办公室)(?:给)?(?:点了|烧了)"),
    # Money sent to a swindler minutes ago, which the police can still have stopped, or a swindler
    # still asking for more: not a swindle told as done, however much was paid already.
    "fraud_ongoing": (r"(?:再|还要)垫[^，。,]{0,4}(?:才能|就能)", r"弹出(?:了)?转账",
                      r"(?:转|汇|打)(?:了|出去|过去)[^。]{0,24}(?:赶紧|马上|快|能不能|帮我|帮忙)"
                      r"[^，。,]{0,4}(?:冻结|止付|拦截|拦住|拦下|拦回|拦)",
                      r"(?:说|让|叫)(?:我)?再转",
                      r"还(?:要|让|叫)(?:我|他|她)?(?:再)?转", r"(?:他|对方)还在催", r"怎么止付",
                      r"(?:仍|还|正)在(?:跟|和|与)?[^，。,]{0,4}通话", r"(?:要求|让)[^，。,]{0,4}(?:立即|马上)转账",
                      r"不准(?:跟|告诉)(?:家里人|家人|任何人)", r"开(?:个)?房间[^。]{0,8}(?:调查|配合)"),
    "fraud_now": (r"(?:一直|正)在扣钱|一笔一笔(?:被|地)?扣", r"正(?:要|准备|在)(?:去)?(?:取钱|转账|汇款|打钱)",
                  r"(?:正|在)排(?:着)?队(?:转账|汇款|取钱|交钱)", r"正(?:要|准备|在)[^，。,]{0,10}(?:转过去|转给|汇过去)",
                  r"屏幕(?:自己)?在动|远程控制|共享屏幕", r"冒充[^。]{0,16}正在", r"安全账户",
                  r"(?:正在|现在|这会儿|此刻|已经|准备|要).{0,12}(?:银行|柜台|ATM|取款机).{0,24}(?:转|汇|取|打钱)",
                  r"正在.{0,12}(?:转账|打钱|汇款|汇钱)",
                  r"(?:快|赶紧|帮忙|帮我).{0,4}拦(?:住|一下|下)",
                  r"(?:劝不住|劝不听|怎么劝都不听|拦不住|拦(?:都|也)拦不住)",
                  r"(?:骗子|冒充.{0,8}的人).{0,6}(?:在|就在)(?:门口|楼下|家里)", r"验证码",
                  r"(?:银行卡)?密码[^，。,]{0,10}(?:说|告诉|给)", r"屏幕共享",
                  r"(?:让|叫|要)(?:我|他|她|老人|我爸|我妈)[^，。,]{0,4}转(?:账|钱)", r"(?:正|正在|还)?准备(?:再)?转",
                  r"非要(?:把)?[^，。,]{0,8}转",
                  r"(?:拿着|带着)(?:存折|银行卡|卡)[^，。,]{0,4}(?:去|到)(?:了)?银行",
                  r"(?:说是|冒充|自称)[^，。,]{0,10}的[^。]{0,30}(?:还在|正在|刚进了?)(?:敲门|挨家|楼里|我们|我家|家|门口)",
                  r"要(?:银行卡|存折|密码|身份证)[^。]{0,20}(?:刚进|还在|正在)",
                  r"(?:说是|冒充|自称)[^。]{0,40}(?:还没走|还在门口|还在敲门|在门口等)", r"上门收(?:现金|钱)"),
    "electric": (r"水(?:已经)?(?:漫|淹|流)(?:到|过)(?:了)?[^，。,]{0,3}(?:插座|电线|电箱|配电)",
                 r"(?<!杆)电线(?!杆)[^，。,]{0,8}(?:掉|断|垂|落|耷拉)(?:在|到)(?:地|路)",
                 r"高压线.{0,6}(?:断|掉|垂|落)", r"漏电", r"触电", r"电(?:着|到)(?:了)?人",
                 r"(?:冒|打|噼啪).{0,2}火花", r"电线(?!皮)[^，。,]{0,6}(?:冒烟|着火|烧)",
                 r"被电(?:倒|晕|伤|着)",
                 r"(?:配电|电箱|电柜|电线|插座|电闸)[^。]{0,12}(?:僵住|粘在|抖|倒下)",
                 r"(?:踩|走)进去就倒", r"(?:狗|人)[^，。,]{0,4}(?:过去|进去)(?:也)?倒了",
                 r"电线[^。]{0,12}(?:水坑|水里|积水)", r"冒蓝光|蓝色火花"),
    "collapse": (r"(?:天花板|吊顶|屋顶|房顶|楼板)[^，。,]{0,4}(?:往下)?掉(?:水泥|砖|块|渣)", r"倒塌", r"坍塌",
                 r"(?:楼|房|墙|顶|桥|路面|地面|地|隧道|棚|屋|山|坡|土|井|坑|窑|矿)[^，。,]{0,4}塌了",
                 r"塌方", r"(?:(?<!不)要(?!不要)|快|随时|马上).{0,4}(?:塌|倒|掉|砸)",
                 # Falling over onto people below, a bridge's pier cracked under traffic.
                 r"往[^，。,]{0,8}倒[^。]{0,20}(?:底下|下面|下边)[^。]{0,6}(?:人|学生|孩子|行人)",
                 r"倒了一半", r"桥墩[^，。,]{0,6}(?:裂|断|塌|歪|倾斜)",
                 r"(?:天花板|楼板|屋顶|房顶|墙)[^。]{0,14}(?:掉渣|咔咔|嘎吱)",
                 r"(?:在)?(?:空中|半空)(?:乱)?(?:甩|飞|晃)", r"往下沉",
                 r"裂缝(?:能)?(?:伸|塞)进(?:手|拳头)", r"(?:屋顶|房顶)[^，。,]{0,6}(?:掀开|掀了|掀翻|刮跑)",
                 r"(?:把|将)[^，。,]{0,10}(?:墙|房)[^，。,]{0,2}(?:推倒|冲倒|冲垮|压塌)", r"滑土",
                 r"(?:裂|塌|断)[^。]{0,12}(?:车|人)还在(?:走|过|开)", r"摇摇欲坠",
                 r"(?:悬|挂)在半空", r"晃来晃去.{0,20}(?:底下|下面|下边)",
                 r"(?:吊|挂|悬)(?:在)?[^，。,]{0,6}(?:晃|摇)[^。]{0,16}(?:底下|下面|下边|人来人往|行人)",
                 r"砸(?:到|中|在)(?:了)?" + _PEOPLE, r"裂了[^，。,]{0,4}(?:要|快)(?:塌|倒|断|掉)", r"滑坡", r"泥石流",
                 r"(?:墙|楼|房)[^，。,]{0,8}(?:裂开|往外鼓|鼓包|往外倒)", r"掉砖", r"倒下来",
                 r"(?:会|要)被车撞", r"(?:正在|正|已经在)往[^，。,]{0,8}(?:倒|歪|塌)",
                 r"(?:挂|吊)着[^。]{0,8}(?:晃)[^。]{0,12}(?:底下|下面|下边|车来车往|人来人往)",
                 r"泥(?:石)?(?:往下)?滑", r"冲进[^，。,]{0,6}(?:家|屋|房)"),
    "crowd": (r"栏杆[^，。,]{0,6}(?:咯吱|吱吱|晃|要断|变形)", r"挤(?:满|成一团)[^。]{0,10}(?:栏杆|踩|倒|喘)",
              r"(?<!摊贩)(?<!商贩)(?<!摊点)聚集", r"围堵", r"堵(?:住|了)?(?:路|门|大门|马路)",
              r"(?:路|门|马路|大门|路口)\S{0,2}堵(?:死|住|上)", r"对峙",
              r"(?:上百|几百|好几百|好几十|几十|一大群|一大帮|一群)(?:号|个|名)?\S{0,3}"
              r"(?:人|摊贩|村民|工人|业主|学生|家属|骑手|司机|商户|家长|群众)[^。]{0,16}(?:围|堵|闹|冲|打(?:人|架|起来)|砸|聚)",
              r"(?:[一二两三四五六七八九几]?[十百千]|\d{2,})(?:多|来)?(?:号|个|名)?(?:人|村民|工人|业主|学生|家属)"
              r"[^。]{0,16}(?:围|堵|闹|冲|砸|聚)",
              r"(?:发生|起了|爆发|肢体)冲突",
              r"把[^，。,]{0,10}(?:马路|路|路口|大门|门口)(?:给)?堵(?:了|住|死)", r"聚了", r"推(?:保安|人|警察|民警)",
              r"情绪(?:很|非常|特别)?激动", r"推搡", r"踩踏", r"踩倒", r"(?:都|一起)往外(?:挤|冲)", r"暴乱", r"打砸", r"挤倒",
              r"踩在(?:底下|脚下)"),
    "crash": (r"(?:车|货车|卡车|客车|大巴|罐车)翻(?:在|到|进|了)",
              "(?:" + _SOMEONE + "|" + _PEOPLE + r"|我|同事|朋友|邻居)[^，。,]{0,3}被(?:车|汽车|货车|卡车|电动车|摩托车?|"
              r"轿车|公交车?|出租车|三轮车?)撞(?:了|倒|伤|飞|翻)?", r"司机[^。]{0,10}(?:打瞌睡|睡着了)",
              r"(?:打瞌睡|睡着了)[^。]{0,12}(?:护栏|蹭|冲)", r"车祸",
              r"撞(?:了|到|倒)?(?:人|行人|小孩|老人)", r"翻车", r"侧翻", r"连环撞",
              r"撞车", r"(?:迎头|迎面|对头)(?:相)?撞", r"发生碰撞", r"车头[^，。,]{0,4}变形",
              r"撞(?:上|到)?(?:护栏|树|电线杆).{0,10}(?:人|伤|血)",
              r"压(?:到|住)(?:了)?人", r"碾", r"刹车(?:失灵|坏了|不灵)", r"追尾", r"随时(?:会|要)?(?:追尾|撞)"),
    # Something in the carriageway of a fast road, or a car where it must not be: a crash waiting.
    "road_hazard": (r"(?:戳|横|倒|掉|散|落|滚)(?:到|在)(?:了)?(?:车道|快车道|行车道|路中间|马路中间)",
                    r"(?:高速|快速路|国道|匝道|隧道)[^。]{0,20}(?:掉了|散落|散了一地|横在|戳到|抛锚|逆行|"
                    r"倒车)",
                    r"(?:高架|高速|快速路|隧道|匝道)[^。]{0,12}(?:步行|行走|有(?:个)?(?:人|行人|老人)(?:在)?走)",
                    r"路中间有", r"(?:一个个|一辆辆|好几(?:个|辆)|接连|不停)(?:在|地)?(?:打滑|滑倒|侧滑)",
                    r"(?:一个|连个)?(?:警示牌|警示标志|三角牌|锥桶)(?:都|也)?没(?:有)?(?:摆|放|设)",
                    r"(?:信号灯|红绿灯)[^。]{0,12}(?:坏|不亮|灭|停)[^。]{0,30}(?:没人指挥|乱成|搅在)",
                    r"车[^，。,]{0,4}看不(?:见|清)(?:前头|前面|路)",
                    r"(?:车道|快车道|行车道|匝道)(?:的)?(?:正)?中间", r"压上去", r"车道全堵"),
    "flood": (r"洪水", r"决口", r"(?:未|没|还没)撤离", r"(?:桥|路)面[^，。,]{0,4}(?:都)?看不(?:见|到)了?",
              r"漫过(?:坝|堤|河堤)", r"溃坝|决堤|溃堤|垮坝", r"(?:紧急|马上|赶紧|立即)(?:组织)?撤离",
              r"水(?:漫|淹|灌)(?:进|到)(?:屋|家|房|楼|车)", r"被淹",
              r"淹到(?:腰|胸|脖子)", r"水(?:一直|还在)?(?:往上)?涨",
              r"(?:要|快|眼看)(?:要)?(?:被)?淹"),
    "danger": (r"(?<![不太])危险", r"(?:人)?还没撤(?:完|出来)",
               # Something left behind that ticks.
               r"(?:箱|包|袋)[^。]{0,8}(?:滴滴|嘀嘀|滴答)", r"可疑(?:包裹|箱子|物品|爆炸)",
               r"生命危险", r"危及", r"救命", r"呼救", r"求救", r"出人命", r"人命",
               r"快来人", r"要出事", r"(?:肯定|还得|还会|准得|又得|随时)(?:会|要)?出(?:事|人命)"),
    "animal": (r"(?:狗|犬|蛇|野猪|牛)[^，。,]{0,6}(?:正在|追着|扑|围着)[^，。,]{0,6}(?:咬|人|孩子)",
               r"(?:狗|犬)[^，。,]{0,4}在咬", r"不松口",
               r"(?:牛|马|野猪)[^。]{0,12}(?:顶翻|顶倒|踩伤|撞翻|踩在)",
               r"(?:马蜂|黄蜂|胡蜂|蜂群|一群蜂|蜂子)[^。]{0,10}(?<!没)(?:蛰|蜇|围|追|叮)", r"(?:蛰|蜇)(?:得|了|伤)",
               r"(?:爬|钻|游)出(?:来)?(?:了)?(?:一)?条[^，。,]{0,4}蛇",
               r"野猪[^。]{0,10}(?:闯进|冲进|顶(?:伤|人)|撞(?:伤|人)|咬(?:伤|人))",
               r"顶伤",
               r"疯狗", r"被[^，。,]{0,8}咬(?:了|伤|住)", r"见人就(?:咬|扑)",
               r"(?:刚|刚刚|刚才)咬(?:了|伤)",
               r"把[^，。,]{0,6}咬了", r"扑了", r"追着[^，。,]{0,6}(?:咬|扑)",
               r"(?:已经)?咬了(?:一个|两个|好几个|几个)", r"追人", r"(?:进|爬进|钻进)了?(?:一)?条[^，。,]{0,2}蛇", r"毒蛇",
               r"(?:熊|老虎|虎|狮子|豹子?|狼|野猪)[^，。,]{0,6}(?:翻出|跑出|逃出|窜出|冲出|跑了出来)"),
}

# A negator shortly before a cue, in the same clause, negates it: 没有人受伤, 不是着火, 并未起火.
# "没人要的包" and "没人管的孩子" say whose, not that nothing happened.
# "没想到他真的跳楼了" (unexpectedly) and "不太舒服晕倒了" (a symptom) negate nothing.
_NEGATOR = re.compile(r"(?:差点|差一点|险些|好险|没有(?!人要|人管|人认领|拴|牵|想到|料到)|"
                      r"没(?!人要|人管|人认领|拴|牵|栓|想到|料到)|"
                      r"并没有|并没|不是|并不是|不像|不存在|未|无|不会|别|不用|不要|没啥|没什么|谈不上|算不上|"
                      r"不算|不太(?!舒服|对劲|清醒|好)|不怎么|并不)")
_NEGATION_WINDOW = 6
# A near miss did not happen, unless it just did: "刚才差点撞到行人" says the danger is live.
_NEAR_MISS = re.compile(r"差点|差一点|险些|好险")
# What puts a cue in a condition or a general question, not the present: 万一着火怎么办.
_CONDITION = re.compile(r"(?:以为|散布|谣言|造谣|传言|传说|在传|网传|新闻|网上[^，。,]{0,6}说|"
                        r"视频(?:里)?说|演习|模拟|^以后|今后|将来|真有人|考驾照|科目[一二三四]|考题|有道题|"
                        r"防(?:走失|溺水|火|盗(?![窗门网])|骗|摔|滑|爆)|"
                        r"如果|万一|假如|要是|假设|一旦|以防|防止|预防|怎么预防|避免|演练|培训|知识|宣传|"
                        r"科普|讲座|保险|理赔|赔偿|报销|补偿|补贴|补助|抚恤|丧葬|证明|手续|流程|怎么申请|如何申请|咨询|政策|哪天|迟早|"
                        r"工伤|医药费|不给赔|"
                        r"真(?:要|的)?(?:着火|出事)[^，。]*吗|真(?:要|的)?(?:着火|出事)了?[^，。]*(?:咋|怎么|上哪|哪儿|谁))")
# A threat is made of conditions ("拿不到补偿就带汽油去"): these kinds are never set aside by one.
_THREATS = frozenset({"violence", "threat", "self_harm", "fraud_now", "fraud_ongoing"})
# Said to be over: past and resolved. Kind-specific phrases first, then general ones.
_CLEARED: dict[str, tuple[str, ...]] = {
    "fraud_now": (r"(?:我|他|她)?(?:已经)?转了", r"没(?:有)?(?:转|上当|理他|信)", r"(?:就|直接)?挂了",
                  r"(?<!要)(?<!正要)(?<!转账)(?<!汇款)(?<!打钱)给(?:了)?(?:对方|他|她|人家)了?",
                  r"被转走", r"后来才", r"(?:已经|已|给)冻结|冻结了",
                  r"给(?:了|过去了)",
                  r"刷走",
                  r"(?<!肯定是)(?<!可能是)(?<!应该是)(?<!怕是)(?<!好像)被骗了", r"少了钱",
                  r"钱(?:都|就)?没了"),
    "fire": (r"(?:已经|早就?|早都|都)(?:被)?(?:扑)?灭了", r"灭掉了", r"扑灭了", r"熄灭了", r"没(?:有)?着起来",
             r"火灭了"),
    "smoke": (r"(?:还好|幸好|好在)没(?:有)?着(?:火|起来)", r"没(?:有)?烧起来", r"人(?:也|都)?没事",
              r"(?:已经)?(?:拔了?插头|断电了|拉闸)"),
    "electric": (r"(?:已经)?(?:拉了?闸|断(?:了)?电|拔了?插头)", r"人(?:也|都)?没事"),
    "chemical": (r"没(?:什么|啥)?(?:味|气味)", r"没(?:有)?人不舒服", r"(?:已经)?(?:盖|清理|处理|堵)(?:上|好|掉|住)?了"),
    "animal": (r"没咬(?:着|到|上)", r"(?:已经)?(?:打了?|去打)(?:疫苗|狂犬|针)",
               r"(?:挑|赶|弄|打|抓|撵)(?:出去|走|跑|死|住)了"),
    "violence": (r"(?:已经|早就?)?散了", r"拉开了", r"(?:已经|早就?)(?:走|跑)了", r"打官司|起诉|法律援助|验伤|伤情鉴定"),
    "crowd": (r"(?:已经|早就?)?散了",),
    "missing": (r"(?<![没不])找(?:到|回来|着)了", r"(?<![没不])(?:已经?|已)?被?找回", r"(?<![没不])找(?:到|着)的",
                r"打(?:了)?电话回来", r"人(?:都|也)?好好的", r"都是[^，。,]{0,6}送回", r"(?:已经|自己)回(?:来|家)了",
                r"送回来了"),
    "gas": (r"(?:已经|早就?)?(?:修好|关好|关掉|关上|拧紧)了", r"(?:已经)?(?:来)?查过了", r"(?<!是)不是漏(?:气)?(?![吗吧啊呀么])",
            r"不漏了", r"没(?:有)?味了", r"味(?:道)?(?:都|也)?没了"),
    "injury": (r"已经出院", r"(?:已经)?处理(?:过)?了", r"不严重", r"不多", r"伤(?:已经|早就?|都)?好了",
               r"(?:已经|早就?)(?:痊愈|愈合)"),
    "medical": (r"(?:已经)?(?:拉|吐|取|咳)出来了", r"(?:已经)?(?:缓|好)过来了", r"人(?:都|也)?好了"),
    "trapped": (r"(?:已经|都)?(?:救|弄|放|拉)出来了", r"出来了", r"里(?:面|头)?没(?:有)?人"),
}
# General "it is over" phrases clear every cue; deliberately few ("暂时没有危险" does not: people
# still trapped need rescue however calm the caller sounds).
# No harm done: clears what could have hurt someone and did not.
_NO_HARM = re.compile(r"(?:还好|幸好|好在|万幸)没(?:有)?(?:人|伤|砸|出事|事|压|碰|撞|出人命|造成)")
_NO_HARM_KINDS = frozenset({"collapse", "crash", "trapped", "fall", "smoke", "electric",
                            "road_hazard"})
# Words that say all is well; they do not clear a cue (a fire with nobody hurt is still a fire),
# but the emergency model needs to be surer to overrule them (``calm``).
_CALM = re.compile(r"(?:人(?:都|也)?(?:好好的|没事)|撤了|撤销|没闹事|"
                   r"(?:后来|已经)[^，。,]{0,6}找(?:来|到|着)了|已经(?:回来|回家|找到|联系上)|没(?:有)?人受伤|不要紧)")
# A look-alike's frame (a film, a game, a drill, a course, a leaflet) clears the danger words it
# frames, unless the words also tell of the real world breaking in: "看电影出来发现有人拿刀砍人",
# "我在玩游戏，隔壁突然着火了" are emergencies.
_FRAMES = (r"急救(?:培训|课|知识|常识)|学(?:习)?急救", r"特效|拍戏|剧组",
           r"宣传(?:资料|册|单)", r"玩[^，。,]{0,4}游戏",
           r"(?:搞|组织|进行|开展)[^，。,]{0,6}(?:演练|演习)",
           r"(?:看|刷)(?:了)?(?:个|一个|一部|部)?[^，。,]{0,4}(?:电影|电视剧|小说|警匪片)",
           r"游戏里(?:的)?(?:话|说的)|是(?:在)?(?:玩)?游戏",
           r"(?:是|原来是)[^，。,]{0,6}(?:演练|演习|摆拍|剧本|拍戏|拍视频)", r"(?:如果|万一)遇到")
_FRAME_WORDS = frozenset({"演习", "模拟", "演练", "培训", "知识", "宣传", "科普", "讲座"})
_REAL = re.compile(r"发现|看见有|听见|听到有|突然|真的|真有|快来|救命|赶紧来|回来|看完|散场")
_CLEARED_ANY = (r"现在(?:人)?(?:都|也)?(?:已经)?没事了", r"已经没事了", r"(?:通|修好|恢复)了(?:吗|没)",
                r"危险(?:已经)?(?:解除|排除)", r"早(?:就|都)?(?:过去|处理)了",
                r"已经处理(?:好|完)了", r"(?<!不像)(?<!不是)(?<!不像是)(?<!以为)(?<!以为是)(?<!以为他)(?<!以为她)开玩笑",
                r"恶作剧",
                r"谎报", r"报假警", r"编造|虚构", r"根本没(?:有)?(?:这回事|这事)",
                r"(?:是|都是)假的", r"哈哈(?:大)?笑", r"乱报", r"瞎报", r"现在没(?:啥|什么)事", r"(?:已经)?联系上了",
                r"(?:撤|撤销|撤回|取消)了?(?:这个|那个)?报警", r"报警(?:已经)?(?:撤|撤销|撤回|取消)了",
                r"报的(?:那个|这个)?(?:撤|撤销|取消)了")
# A cue said of another time (昨天, 上个月, 上次 ...) in its own clause is over, unless the clause
# also says now; except what lasts: a person missing since yesterday is missing now. 过去 after a
# verb is a direction, not the past: "外婆晕过去了" is now.
_PAST = re.compile(r"(?:昨天|前天|大前天|上周|上个?礼拜|上个?星期|上个?月|"
                   r"上次|上回|去年|前年|以前|之前(?!还好好|好好|都好好|都还好|还好)|前几天|前些天|"
                   r"那天|那(?:事|次|回)|(?:快|都|已经)?[一两三半几]年了|当时|(?<![晕昏抽死背厥睡冲跑走跳扑看爬滚飘游飞撞])过去|曾经|出过|着过|"
                   r"[漏烧炸塌倒]过一[次回]|前[两三]天|前一阵|前段时间|昨晚|昨夜|前晚|那会儿|本月\d+日|\d+月\d+[日号]|"
                   r"\d+\s*(?:年|个月|天)前|[一二两三四五六七八九十几]+(?:年|个月|天)前)")
# Another time, told as an episode: over even for what lasts (a person missing since yesterday is
# missing now; a child lost "last time" was found).
_EPISODE = re.compile(r"上次|上回|那次|那回|以前|去年|前年|小时候")
_NOW = re.compile(r"(?:现在|正在|刚才|刚刚|还在|马上|赶紧|快点?来|目前|此刻|这会儿)")
# A past clause whose state the next words say goes on ("当时就倒地不起了，现在还没醒") is now.
_STILL = re.compile(r"(?:还|仍然?|依然|至今|到现在)(?:还)?(?:没(?:有)?|未)(?:醒|找到|回来|出来|救出|脱险)|"
                    r"(?:现在|到现在|至今|仍然?|依然)(?:还)?(?:昏迷|在流血|被困|困着|叫不醒)")
_STILL_REACH = 12
_LASTING = frozenset({"missing", "trapped", "self_harm", "threat"})
_TOLD_AS_DONE = frozenset({"fraud_now"})
# A gathering announced for another day is a lead (stability_leads), not an emergency now.
_PLANNED = re.compile(r"(?:拟于|计划|打算|号召|说要|下周|下礼拜|下个月|明天|后天|到时候|周[一二三四五六日末]|星期[一二三四五六日天])")
# Said of every day or every evening: a chimney's smoke or a factory's smell is pollution (12345).
_HABITUAL = re.compile(r"(?:天天|每天|每晚|每到|一到(?:晚上|夜里|傍晚)|经常|总是|老是|容易|隔三差五|常年|长期|一直在(?![响叫漏喊哭流烧着]))")
_HABITUAL_KINDS = frozenset({"smoke", "gas", "chemical"})
# A fire lit every evening is someone burning rubbish; said of the fire's own clause only
# ("楼道里老是有人抽烟，今天着火了" is a fire).
_HABITUAL_IN_CLAUSE = frozenset({"fire", "medical"})
# Smoke from a chimney or a rubbish fire someone keeps is pollution (12345); fire, if said, is a
# cue of its own.
_ORDINARY_SOURCE = {"smoke": re.compile(r"烟囱|烟筒|烧(?:垃圾|秸秆|树叶|落叶|电线皮|轮胎|塑料)")}
# Rubbish set alight on purpose is burning rubbish; said of the fire's own clause only ("垃圾堆点火
# 烧，现在烧到房子了" is a fire by its next cue).
_ORDINARY_SOURCE_IN_CLAUSE = {"fire": re.compile(
    r"(?:垃圾|树叶|落叶|秸秆|杂草|菜筐|泡沫箱|纸箱|旧家具)[^，。,]{0,12}(?:点火|一把火)"),
    # A road jammed at rush hour is traffic, not a crowd.
    "crowd": re.compile(r"高峰|堵车|车流|车多")}
# An animal's own fight, wound or trap, in a sentence that names no person, is an animal matter
# for 12345 ("流浪猫钻进发动机舱卡住了", "两条狗打架"); an animal that endangers people has
# cues of its own (kind "animal").
_ANIMAL = re.compile(r"猫|狗|犬|鸟|鸡|鸭|鹅|兔|鸽|羊|刺猬|松鼠")
_ANIMAL_ONLY_KINDS = frozenset({"catalog", "violence", "trapped", "injury", "fall", "unconscious"})
_ANYONE = re.compile(_SOMEONE + "|" + _PEOPLE + "|我|你|咱|谁|家里|业主|居民|邻居|群众|住户")
_SENTENCE = re.compile(r"[。！？!?\n]")
_CLAUSE = re.compile(r"[，。！？；,.!?;、\n]|但是|可是|不过|结果|然后")

_COMPILED = {kind: tuple(re.compile(p) for p in pats) for kind, pats in CUES.items()}
_CLEARED_C = {kind: tuple(re.compile(p) for p in pats) for kind, pats in _CLEARED.items()}
_CLEARED_ANY_C = tuple(re.compile(p) for p in _CLEARED_ANY)
_FRAMES_C = tuple(re.compile(p) for p in _FRAMES)


@dataclass(frozen=True)
class Cue:
    kind: str
    text: str                 # the words of the description that are the cue
    set_aside: str | None     # why it does not count ("negated: 没有人受伤"), or None: it counts


@dataclass(frozen=True)
class Danger:
    emergency: bool
    cues: tuple[Cue, ...]
    calm: str | None = None     # words saying all is well, if any

    @property
    def why(self) -> str:
        standing = [c for c in self.cues if c.set_aside is None]
        if standing:
            return "emergency: " + ", ".join(f"{c.kind} ({c.text})" for c in standing)
        if self.cues:
            return "no emergency: " + "; ".join(f"{c.text}: {c.set_aside}" for c in self.cues)
        return "no emergency: no cue of danger"


def _clause_span(text: str, start: int, end: int) -> tuple[int, int]:
    left = 0
    for m in _CLAUSE.finditer(text, 0, start):
        left = m.end()
    right = _CLAUSE.search(text, end)
    return left, right.start() if right else len(text)


def _set_aside(kind: str, text: str, start: int, end: int) -> str | None:
    left, right = _clause_span(text, start, end)
    before = text[max(left, start - _NEGATION_WINDOW):start]
    neg = None
    for m in _NEGATOR.finditer(before):
        neg = m
    # "没有人受伤" negates; "没人管, 有人受伤" does not (a negator of another clause never reaches).
    if neg is not None and not (_NEAR_MISS.fullmatch(neg.group(0))
                                and _NOW.search(text, left, right)):
        return f"negated ({before[neg.start():]}{text[start:end]})"
    clause = text[left:right]
    cond = _CONDITION.search(clause) if kind not in _THREATS else None
    if cond and cond.group(0) in _FRAME_WORDS and _REAL.search(clause):
        cond = None
    if cond:
        return f"not happening now ({cond.group(0)})"
    past = _PAST.search(clause)
    if (past and kind not in _LASTING and not _NOW.search(clause)
            and not _STILL.search(text, right, right + _STILL_REACH)):
        return f"in the past ({past.group(0)})"
    episode = _EPISODE.search(clause)
    if episode and not _NOW.search(clause):
        return f"another time, over ({episode.group(0)})"
    planned = _PLANNED.search(text) if kind == "crowd" else None
    if planned and not _NOW.search(clause):
        return f"planned, not happening now ({planned.group(0)})"
    if kind in _ANIMAL_ONLY_KINDS:
        begin = 0
        for m in _SENTENCE.finditer(text, 0, start):
            begin = m.end()
        stop = _SENTENCE.search(text, end)
        said = text[begin:stop.start() if stop else len(text)]
        animal = _ANIMAL.search(said)
        if animal and not _ANYONE.search(said):
            return f"an animal's, no person named ({animal.group(0)})"
    source = (_ORDINARY_SOURCE[kind].search(text) if kind in _ORDINARY_SOURCE
              else _ORDINARY_SOURCE_IN_CLAUSE[kind].search(clause)
              if kind in _ORDINARY_SOURCE_IN_CLAUSE else None)
    if source:
        return f"its ordinary source, not an emergency now ({source.group(0)})"
    habit = (_HABITUAL.search(text) if kind in _HABITUAL_KINDS
             else _HABITUAL.search(clause) if kind in _HABITUAL_IN_CLAUSE else None)
    if habit:
        return f"a standing nuisance, not an emergency now ({habit.group(0)})"
    # A swindle told as done ("我给了验证码", "钱被转走了") is over from the cue's own clause on.
    after = text[left:] if kind in _TOLD_AS_DONE else text[end:]
    for pattern in _CLEARED_C.get(kind, ()):
        m = pattern.search(after)
        if m:
            return f"over ({m.group(0)})"
    if kind in _NO_HARM_KINDS:
        m = _NO_HARM.search(text, end)
        if m:
            return f"no harm done ({m.group(0)})"
    for pattern in _CLEARED_ANY_C:
        m = pattern.search(text)
        if m:
            return f"over ({m.group(0)})"
    if not _REAL.search(text):
        for pattern in _FRAMES_C:
            m = pattern.search(text)
            # A frame in another clause does not reach a cue its own clause says is now.
            if m and (left <= m.start() < right or not _NOW.search(clause)):
                return f"a look-alike, not real ({m.group(0)})"
    return None


def judge(text: str | None, extra: tuple[str, ...] = (),
          extra_words: tuple[str, ...] = ()) -> Danger:
    """``extra``: the catalog's own emergency terms (substrings), ``extra_words`` its English
    keywords (whole words, any case): cues of kind "catalog"."""
    text = (text or "").strip()
    if not text:
        return Danger(False, ())
    found: list[tuple[int, int, str]] = []
    for kind, patterns in _COMPILED.items():
        for pattern in patterns:
            for m in pattern.finditer(text):
                found.append((m.start(), m.end(), kind))
    for term in extra:
        for m in re.finditer(re.escape(term), text):
            found.append((m.start(), m.end(), "catalog"))
    for word in extra_words:
        for m in re.finditer(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text, re.IGNORECASE):
            found.append((m.start(), m.end(), "catalog"))
    # One cue per stretch of text: the longest match where several overlap.
    found.sort(key=lambda f: (f[0], -(f[1] - f[0])))
    cues: list[Cue] = []
    last_end = -1
    for start, end, kind in found:
        if start < last_end:
            continue
        last_end = end
        cues.append(Cue(kind, text[start:end], _set_aside(kind, text, start, end)))
    calm = _CALM.search(text)
    return Danger(any(c.set_aside is None for c in cues), tuple(cues),
                  calm.group(0) if calm else None)
