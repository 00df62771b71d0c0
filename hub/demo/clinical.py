"""What a county hospital's month is made of: wards, diagnoses, procedures, tests (data).

Codes are the ones the members' systems send: ICD-10 (GB/T 14396 national edition) diagnoses,
ICD-9-CM-3 procedures, and each lab's local test codes that its ConceptMap in
``profiles/community/concept-maps`` maps to LOINC.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Ward:
    name: str  # 心内科
    service: str  # PV1-10 hospital service
    rooms: tuple[int, int]  # first and last room number
    doctors: tuple[tuple[str, str, str], ...]  # (id, family, given)
    diagnoses: tuple[tuple[str, str], ...]  # (ICD-10, name): what brings people here
    procedures: tuple[tuple[str, str], ...]  # (ICD-9-CM-3, name)
    stay_days: tuple[int, int]  # length of stay, shortest and longest
    weight: float  # share of admissions
    min_age: int = 0


WARDS = (
    Ward("心内科", "CAR", (301, 318), (("D1001", "王", "建国"), ("D1004", "钱", "立新")),
         (("I20.0", "不稳定型心绞痛"), ("I21.0", "急性前壁心肌梗死"), ("I50.9", "心力衰竭"),
          ("I48.x00", "心房颤动"), ("I10.x00", "高血压")),
         (("00.66", "经皮冠状动脉腔内成形术"), ("36.06", "冠状动脉支架置入术"),
          ("37.22", "左心导管检查")), (4, 11), 1.3, 40),
    Ward("呼吸内科", "RES", (205, 220), (("D1003", "孙", "丽"), ("D1007", "郑", "海波")),
         (("J18.9", "肺炎"), ("J44.1", "慢性阻塞性肺病伴有急性加重"), ("J45.9", "哮喘"),
          ("J20.9", "急性支气管炎")),
         (("33.22", "纤维支气管镜检查"),), (5, 12), 1.2),
    Ward("神经内科", "NEU", (401, 416), (("D1011", "周", "文"), ("D1012", "吴", "晓燕")),
         (("I63.9", "脑梗死"), ("I61.9", "脑出血"), ("G45.9", "短暂性脑缺血发作")),
         (("88.91", "头颅磁共振检查"),), (6, 14), 1.0, 45),
    Ward("内分泌科", "END", (501, 510), (("D1021", "林", "静"),),
         (("E11.9", "2型糖尿病"), ("E11.2", "2型糖尿病伴有肾的并发症"),
          ("E05.9", "甲状腺功能亢进症")),
         (), (4, 9), 0.6, 20),
    Ward("消化内科", "GAS", (511, 522), (("D1031", "何", "志强"),),
         (("K29.7", "胃炎"), ("K92.2", "胃肠出血"), ("K80.2", "胆囊结石不伴有胆囊炎")),
         (("45.13", "胃镜检查"), ("45.23", "结肠镜检查")), (3, 9), 0.8),
    Ward("普外科", "GEN", (601, 618), (("D1041", "陈", "刚"), ("D1042", "杨", "鹏")),
         (("K35.8", "急性阑尾炎"), ("K40.9", "腹股沟疝"), ("K80.1", "胆囊结石伴有其他胆囊炎")),
         (("47.01", "腹腔镜下阑尾切除术"), ("51.23", "腹腔镜下胆囊切除术"),
          ("53.02", "腹股沟斜疝修补术")), (3, 8), 1.0),
    Ward("骨科", "ORT", (701, 716), (("D1051", "郭", "勇"),),
         (("S72.0", "股骨颈骨折"), ("M17.9", "膝关节病"), ("S82.2", "胫骨骨干骨折")),
         (("81.52", "髋关节部分置换术"), ("79.36", "胫骨骨折切开复位内固定术")), (6, 14), 0.8),
)  # fmt: skip
# Diagnoses added at discharge to people old enough to have them.
COMORBIDITIES = (
    ("I10.x00", "高血压"), ("E11.9", "2型糖尿病"), ("E78.5", "高脂血症"), ("N18.9", "慢性肾脏病"),
)  # fmt: skip
# Why a township centre refers someone up (ICD-10), and how urgent that usually is.
REFERRAL_REASONS = (
    ("I20.0", "不稳定型心绞痛", "CAR"), ("I63.9", "脑梗死", "NEU"), ("J18.9", "肺炎", "RES"),
    ("J44.1", "慢性阻塞性肺病伴有急性加重", "RES"), ("K35.8", "急性阑尾炎", "GEN"),
    ("E11.9", "2型糖尿病", "END"), ("S72.0", "股骨颈骨折", "ORT"), ("I50.9", "心力衰竭", "CAR"),
)  # fmt: skip
URGENT_REASONS = frozenset({"I20.0", "I63.9", "K35.8", "I50.9"})
# PV1-36 离院方式 (WS 445): routine, transferred to another hospital, to primary care,
# self-discharged, died.
DISPOSITIONS = (("1", 0.82), ("2", 0.03), ("3", 0.11), ("4", 0.03), ("5", 0.01))
REJECT_REASONS = ("床位已满，建议转县中医院", "病情稳定，建议乡镇卫生院继续治疗")
CARE_ADVICE = {
    "CAR": ("低盐低脂饮食，戒烟限酒", "规律服用阿司匹林肠溶片 100mg 每日一次",
            "2周后到家庭医生处复查血常规、血脂，监测血压"),
    "RES": ("注意保暖，避免受凉", "坚持呼吸功能锻炼", "1周后复查胸部X线"),
    "NEU": ("低盐低脂饮食，控制血压", "坚持康复训练", "每月神经内科门诊随访"),
    "END": ("糖尿病饮食，规律运动", "监测空腹及餐后血糖", "3个月后复查糖化血红蛋白"),
    "GAS": ("清淡饮食，忌辛辣", "按时服用质子泵抑制剂", "必要时复查胃镜"),
    "GEN": ("伤口保持清洁干燥", "7天后拆线", "1个月内避免重体力劳动"),
    "ORT": ("患肢功能锻炼，避免负重", "2周后拆线", "1个月后复查X线"),
}  # fmt: skip


@dataclass(frozen=True)
class Analyte:
    code: str  # the lab's local code
    name: str
    unit: str
    low: float
    high: float
    decimals: int


@dataclass(frozen=True)
class Panel:
    """A test as the lab centre reports it (its local codes, XJYZX-lab ConceptMap)."""

    code: str
    name: str
    loinc: str  # the catalogue item the panel is recognised as
    analytes: tuple[Analyte, ...]


def _a(code: str, name: str, unit: str, low: float, high: float, decimals: int = 1) -> Analyte:
    return Analyte(code, name, unit, low, high, decimals)


PANELS = {
    "CBC": Panel("CBC", "血常规", "58410-2", (
        _a("WBC", "白细胞计数", "10*9/L", 3.5, 9.5),
        _a("RBC", "红细胞计数", "10*12/L", 4.3, 5.8, 2),
        _a("HGB", "血红蛋白", "g/L", 115, 175, 0), _a("PLT", "血小板计数", "10*9/L", 125, 350, 0),
        _a("HCT", "红细胞压积", "%", 35, 50))),
    "LFT": Panel("LFT", "肝功能", "24325-3", (
        _a("ALT", "丙氨酸氨基转移酶", "U/L", 9, 50, 0),
        _a("AST", "天门冬氨酸氨基转移酶", "U/L", 15, 40, 0),
        _a("TBIL", "总胆红素", "umol/L", 3.4, 20.5))),
    "RFT": Panel("RFT", "肾功能", "24362-6", (
        _a("CREA", "肌酐", "umol/L", 57, 111, 0), _a("UREA", "尿素", "mmol/L", 3.1, 8.0))),
    "LIPID4": Panel("LIPID4", "血脂四项", "57698-3", (
        _a("TC", "总胆固醇", "mmol/L", 2.8, 5.2, 2), _a("TG", "甘油三酯", "mmol/L", 0.45, 1.7, 2),
        _a("HDL", "高密度脂蛋白胆固醇", "mmol/L", 1.0, 1.9, 2),
        _a("LDL", "低密度脂蛋白胆固醇", "mmol/L", 1.5, 3.4, 2))),
    "GLU": Panel("GLU", "葡萄糖", "2345-7", (_a("GLU", "葡萄糖", "mmol/L", 3.9, 6.1, 2),)),
    "HBA1C": Panel("HBA1C", "糖化血红蛋白", "4548-4",
                   (_a("HBA1C", "糖化血红蛋白", "%", 4.0, 6.0),)),
    "CRP": Panel("CRP", "C反应蛋白", "1988-5", (_a("CRP", "C反应蛋白", "mg/L", 0, 8),)),
    "UA": Panel("UA", "尿常规", "24356-8", (_a("UA", "尿常规", "", 0, 0, 0),)),
}  # fmt: skip
# 尿常规 is reported as one text result (尿蛋白 阴性 ...), not numbers.
URINE_TEXT = ("尿蛋白(-) 尿糖(-) 潜血(-) 白细胞(-)", "尿蛋白(+) 尿糖(-) 潜血(-) 白细胞(+)")
# What the inpatient wards order from the lab centre (panel, share of stays).
WARD_PANELS = {
    "CAR": ("LIPID4", "RFT"), "RES": ("CRP",), "NEU": ("LIPID4", "GLU"), "END": ("GLU", "HBA1C"),
    "GAS": ("LFT",), "GEN": ("LFT", "CRP"), "ORT": ("RFT",),
}  # fmt: skip
# Township orders to the lab centre: (panel, weight).
TOWNSHIP_LAB = (("CBC", 34), ("GLU", 16), ("LIPID4", 15), ("LFT", 10), ("RFT", 10),
                ("HBA1C", 8), ("UA", 7))  # fmt: skip


@dataclass(frozen=True)
class Exam:
    code: str  # the imaging centre's local code (XYXZX-imaging ConceptMap)
    name: str
    loinc: str
    normal: tuple[str, str]  # (所见, 诊断意见)
    abnormal: tuple[str, str]


EXAMS = {
    "CR-CHEST": Exam("CR-CHEST", "胸部X线摄影", "36643-5",
                     ("双肺纹理清晰，未见明显实质性病变。心影大小形态正常。", "双肺未见明显异常。"),
                     ("右下肺野见斑片状模糊影，边缘不清。", "右下肺炎症，建议治疗后复查。")),
    "CT-CHEST": Exam("CT-CHEST", "胸部CT平扫", "29252-4",
                     ("双肺野清晰，纵隔未见肿大淋巴结。", "胸部CT平扫未见明显异常。"),
                     ("右肺上叶见一约6mm磨玻璃结节。", "右肺上叶微小结节，建议6个月后复查。")),
    "CT-HEAD": Exam("CT-HEAD", "头颅CT平扫", "30799-1",
                    ("脑实质密度均匀，脑室系统未见扩大。", "颅内未见明显异常。"),
                    ("左侧基底节区见片状低密度影。", "左侧基底节区腔隙性脑梗死。")),
    "US-ABD": Exam("US-ABD", "腹部超声", "24558-9",
                   ("肝胆胰脾大小形态正常，回声均匀。", "肝胆胰脾未见明显异常。"),
                   ("胆囊内见强回声团，后伴声影，约12mm。", "胆囊结石。")),
}  # fmt: skip
WARD_EXAMS = {"CAR": "CR-CHEST", "RES": "CT-CHEST", "NEU": "CT-HEAD", "GAS": "US-ABD",
              "GEN": "US-ABD", "ORT": "CR-CHEST"}  # fmt: skip
TOWNSHIP_EXAM = (("CR-CHEST", 5), ("US-ABD", 4), ("CT-CHEST", 2))
# Township centres' own codes for what they order, where their ConceptMap has one; the others
# send the LOINC code itself.
LOCAL_ORDER_CODES = {
    "QSWSY": {"CBC": ("XCG", "血常规"), "UA": ("NCG", "尿常规"), "GLU": ("XT", "血糖")},
    "HXWSY": {"CBC": ("XCG", "血常规"), "UA": ("NCG", "尿常规"), "GLU": ("GLU", "葡萄糖")},
}
# Why a clinician orders again though a recognisable result exists (repeat-reason codes).
REPEAT_REASONS = (("condition-changed", 5), ("patient-request", 2), ("fast-changing", 1),
                  ("decisive", 1), ("other", 1))  # fmt: skip
TOWNSHIP_DOCTORS = (("Q2001", "陈", "芳"), ("Q2002", "周", "敏"), ("Q2003", "徐", "建华"))
