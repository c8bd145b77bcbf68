"""Simplified → Traditional Chinese (Taiwan usage) for the calibration fragments only.

Not a general converter: a phrase table for the words whose Taiwan form differs (人工智能 →
人工智慧, 数据 → 資料, …) and a character table that covers exactly the characters used in
``fragments_zh_hans.py``; ``tests/unit/test_audit_calibration.py`` checks that no character of the
Simplified fragments outside the table's known-identical set is left unconverted.
"""

from __future__ import annotations

PHRASES = {
    "人工智能": "人工智慧",
    "数据": "資料",
    "信息": "資訊",
    "复杂": "複雜",
    "计划": "計畫",
    "轻松": "輕鬆",
    "账户": "帳戶",
    "系列": "系列",
    "勤奋": "勤奮",
    "一般性": "一般性",
}

_PAIRS = (
    "万萬 与與 严嚴 个個 临臨 为為 举舉 么麼 乐樂 习習 书書 争爭 亲親 从從 们們 价價 优優 会會 "
    "伤傷 体體 关關 内內 军軍 决決 况況 几幾 击擊 创創 别別 办辦 务務 动動 势勢 区區 却卻 历歷 "
    "压壓 参參 双雙 发發 变變 吗嗎 响響 员員 团團 国國 坚堅 处處 复複 壮壯 奋奮 实實 审審 对對 "
    "导導 属屬 屡屢 师師 帮幫 带帶 广廣 应應 开開 异異 归歸 当當 录錄 总總 愿願 战戰 户戶 执執 "
    "扬揚 护護 报報 挡擋 换換 据據 数數 断斷 无無 时時 显顯 术術 机機 杂雜 权權 条條 来來 构構 "
    "样樣 残殘 没沒 济濟 涂塗 灾災 点點 独獨 献獻 环環 现現 监監 着著 瞒瞞 码碼 础礎 种種 称稱 "
    "稳穩 类類 纪紀 纯純 细細 终終 经經 结結 绝絕 绩績 维維 罗羅 羡羨 节節 艰艱 虚虛 规規 见見 "
    "观觀 视視 计計 认認 讨討 让讓 议議 记記 许許 论論 讽諷 设設 证證 评評 诚誠 话話 该該 语語 "
    "误誤 请請 诺諾 调調 谨謹 贡貢 责責 败敗 账帳 贫貧 费費 资資 赛賽 赞讚 辩辯 达達 迁遷 过過 "
    "运運 还還 这這 进進 远遠 迟遲 选選 里裡 针針 钦欽 银銀 错錯 镇鎮 长長 门門 问問 间間 闻聞 "
    "际際 隐隱 难難 须須 预預 领領 题題 骄驕 页頁 项項 韧韌 写寫 后後 学學 强強 于於 并並 誉譽 "
    "轻輕 兰蘭 亚亞 乌烏 尔爾 沙沙 乏乏 专專 传傳 单單 围圍 旧舊 确確 范範 谓謂 适適 准準"
)
CHARS = {pair[0]: pair[1] for pair in _PAIRS.split()}


def to_traditional(text: str) -> str:
    for simp, trad in PHRASES.items():
        text = text.replace(simp, trad)
    return "".join(CHARS.get(ch, ch) for ch in text)
