"""The dashboard's words in Chinese (the default: the office works in Chinese) and English.

A missing key shows itself rather than failing a page, and a test checks that every key a
template uses is here in both languages.
"""

from __future__ import annotations

from collections.abc import Callable

ZH, EN = "zh-CN", "en"
LANGS = (ZH, EN)
LANG_COOKIE = "hub_ui_lang"

TEXT: dict[str, tuple[str, str]] = {
    # frame
    "app.title": ("医共体共享记录中枢 · 办公室", "Community records hub · office"),
    "nav.feeds": ("成员与接口", "Members and feeds"),
    "nav.messages": ("消息浏览", "Messages"),
    "nav.recognition": ("结果互认", "Mutual recognition"),
    "nav.referrals": ("转诊与送检", "Referrals and routed orders"),
    "nav.feedback": ("住院信息反馈", "Monthly feedback"),
    "nav.reviews": ("患者索引审核", "Patient index reviews"),
    "lang.switch": ("English", "中文"),
    "logout": ("退出", "Log out"),
    "signed.in.as": ("当前用户", "Signed in as"),
    "session.until": ("会话有效至", "session until"),
    "month": ("月份", "Month"),
    "show": ("查看", "Show"),
    "prev.month": ("上月", "previous month"),
    "next.month": ("下月", "next month"),
    "none": ("无", "none"),
    "no.data": ("暂无数据", "no data"),
    "total": ("合计", "Total"),
    "member": ("成员单位", "Member"),
    "code": ("代码", "Code"),
    # login
    "login.title": ("办公室登录", "Office login"),
    "login.client": ("客户端 ID", "Client id"),
    "login.secret": ("客户端密钥", "Client secret"),
    "login.submit": ("登录", "Log in"),
    "login.failed": ("客户端 ID 或密钥错误。", "Unknown client or wrong secret."),
    "login.not.office": (
        "该客户端不是办公室或管理员客户端（需要 office/admin 角色和 hub/admin 权限）。",
        "This client is not an office or admin client (needs the office/admin role and the "
        "hub/admin scope).",
    ),
    "login.expired": ("会话已过期，请重新登录。", "The session has expired; log in again."),
    "login.hint": (
        "使用办公室客户端的凭据登录，例如 hub clients add --id ygt-office --role office "
        "--scopes 'system/*.rs hub/admin' --secret 生成的密钥。",
        "Log in with an office client's credentials, e.g. the secret printed by hub clients "
        "add --id ygt-office --role office --scopes 'system/*.rs hub/admin' --secret.",
    ),
    "login.stale": (
        "登录表单已失效，请重试。",
        "The login form was stale; please try again.",
    ),
    "csrf.failed": (
        "表单已失效（CSRF 校验失败），请返回刷新后重试。",
        "The form was stale (CSRF check failed); go back, reload and try again.",
    ),
    "forbidden.title": ("无权操作", "Not allowed"),
    "not.found": ("未找到", "Not found"),
    "back": ("返回", "Back"),
    # feeds
    "feeds.title": ("成员与接口", "Members and feeds"),
    "feeds.queues": ("队列", "Queues"),
    "feeds.inbox.pending": ("收件箱待处理", "Inbox pending"),
    "feeds.inbox.oldest": ("最早待处理（秒）", "Oldest pending (s)"),
    "feeds.inbox.failed": ("入库失败待重放", "Failed, waiting for replay"),
    "feeds.outbox": ("发件箱待发送", "Outbox pending"),
    "feeds.dead": ("发件箱死信", "Outbox dead letters"),
    "feeds.subs": ("订阅通知待发送", "Subscription notifications pending"),
    "feeds.all24": ("全部消息（近 24 小时，每小时）", "All messages (last 24 h, per hour)"),
    "feeds.last": ("最近消息", "Last message"),
    "feeds.per.hour": ("每小时消息数（近 24 小时）", "Messages per hour (last 24 h)"),
    "feeds.count24": ("24 小时消息", "Messages, 24 h"),
    "feeds.errors24": ("24 小时错误", "Errors, 24 h"),
    "feeds.error.rate": ("错误率", "Error rate"),
    "feeds.depth": ("队列深度", "Queue depth"),
    "feeds.failed": ("待重放", "To replay"),
    "feeds.never": ("从未", "never"),
    "feeds.ok": ("成功", "ok"),
    "feeds.err": ("错误", "errors"),
    "feeds.unknown.sender": ("（无法识别的发送方）", "(unreadable sender)"),
    "feeds.not.member": ("非成员", "not a member"),
    # messages
    "messages.title": ("消息浏览", "Message browser"),
    "messages.sender": ("发送方", "Sender"),
    "messages.type": ("消息类型", "Type"),
    "messages.control": ("消息控制 ID", "Control id"),
    "messages.patient": ("患者（身份证号/病历号/姓名）", "Patient (resident ID / MRN / name)"),
    "messages.status": ("状态", "Status"),
    "messages.from": ("起始日期", "From"),
    "messages.to": ("截止日期", "To"),
    "messages.search": ("搜索", "Search"),
    "messages.any": ("全部", "any"),
    "messages.received": ("接收时间", "Received"),
    "messages.transport": ("通道", "Transport"),
    "messages.error": ("错误", "Error"),
    "messages.none": ("没有符合条件的消息。", "No message matches."),
    "messages.older": ("更早的消息", "Older messages"),
    "messages.count": ("条", "shown"),
    "message.title": ("消息", "Message"),
    "message.header": ("消息头", "Header"),
    "message.applied": ("入库时间", "Applied"),
    "message.attempts": ("尝试次数", "Attempts"),
    "message.peer": ("来源地址", "Peer"),
    "message.segments": ("原始消息（按段展开）", "Raw message, segment by segment"),
    "message.segment": ("段", "Segment"),
    "message.fields": ("字段", "Fields"),
    "message.raw": ("原文", "Raw text"),
    "message.produced": ("生成的 FHIR 资源", "FHIR resources it produced"),
    "message.provenance": ("溯源（Provenance）", "Provenance"),
    "message.not.applied": (
        "尚未入库：以下为映射出的事务 Bundle 条目。",
        "Not applied yet: the entries of the mapped transaction Bundle.",
    ),
    "message.bundle": ("映射出的事务 Bundle", "Mapped transaction Bundle"),
    "message.no.bundle": ("无法映射，无 Bundle。", "Not mapped: no Bundle."),
    "message.replay": ("重放", "Replay"),
    "message.replay.hint": (
        "修正原因（如成员配置、重复记录）后重新映射并入库。",
        "Map again and apply, after the cause (a member's configuration, a duplicate record) "
        "is fixed.",
    ),
    "message.replayed": ("重放结果", "Replay result"),
    "message.method": ("操作", "Method"),
    "message.url": ("地址", "URL"),
    "message.resource": ("资源", "Resource"),
    # statuses
    "status.pending": ("待处理", "pending"),
    "status.applied": ("已入库", "applied"),
    "status.failed": ("失败", "failed"),
    "status.rejected": ("已拒收", "rejected"),
    "status.skipped": ("已跳过", "skipped"),
    # what a replay did (hub.queue.replay's counts)
    "replay.requeued": ("重新映射并排队", "mapped again and queued"),
    "replay.applied": ("已入库", "applied"),
    "replay.failed": ("入库失败", "failed"),
    "replay.still rejected": ("仍无法映射", "still rejected"),
    "replay.skipped": ("已跳过", "skipped"),
    "replay.none": ("无可重放的消息", "nothing to replay"),
    # Task states (referrals)
    "task.requested": ("已申请", "requested"),
    "task.received": ("已收到", "received"),
    "task.accepted": ("已接收", "accepted"),
    "task.rejected": ("已拒绝", "rejected"),
    "task.in-progress": ("诊疗中", "in progress"),
    "task.completed": ("已完成", "completed"),
    "task.cancelled": ("已取消", "cancelled"),
    # administrative sex
    "gender.male": ("男", "male"),
    "gender.female": ("女", "female"),
    "gender.other": ("其他", "other"),
    "gender.unknown": ("不详", "unknown"),
    # recognition
    "recognition.title": ("检查检验结果互认", "Mutual recognition of results"),
    "recognition.checked": ("查询项次", "Checked"),
    "recognition.recognisable": ("可互认", "Recognisable"),
    "recognition.accepted": ("已互认", "Accepted"),
    "recognition.reordered": ("重复检查", "Repeated"),
    "recognition.pending": ("待决定", "Pending"),
    "recognition.rate": ("互认率", "Recognition rate"),
    "recognition.saved": ("节约费用（元）", "Money saved (yuan)"),
    "recognition.by.member": ("各成员单位：互认与重复", "Per member: accepted and repeated"),
    "recognition.rate.by.member": ("各成员单位互认率（%）", "Recognition rate per member (%)"),
    "recognition.saved.by.member": ("各成员单位节约费用（元）", "Money saved per member (yuan)"),
    "recognition.reasons": ("重复检查理由", "Repeated, by reason"),
    "recognition.trend": ("近 12 个月", "Last 12 months"),
    "recognition.trend.rate": ("每月互认率（%）", "Recognition rate per month (%)"),
    "recognition.trend.saved": ("每月节约费用（元）", "Money saved per month (yuan)"),
    "reason.unspecified": ("未注明", "unspecified"),
    # referrals
    "referrals.title": ("双向转诊与区域中心送检", "Two-way referral and routed orders"),
    "referrals.section": ("双向转诊", "Two-way referral"),
    "referrals.sent": ("转出", "Sent"),
    "referrals.received": ("转入", "Received"),
    "referrals.made": ("转诊数", "Referrals"),
    "referrals.green": ("绿色通道", "Green channel"),
    "referrals.median.accept": ("接收中位时间（分钟）", "Median minutes to accept"),
    "referrals.by.member": ("各成员单位转出（上转/下转）", "Sent per member (up / down)"),
    "referrals.accept.chart": (
        "各接收单位接收中位时间（分钟）",
        "Median minutes to accept, per receiving member",
    ),
    "referrals.open": ("未完成的转诊", "Open referrals"),
    "referrals.due": ("应完成时间", "Due"),
    "referrals.overdue": ("已超时", "overdue"),
    "referrals.requested": ("申请时间", "Requested"),
    "referrals.from": ("转出单位", "From"),
    "referrals.to": ("接收单位", "To"),
    "referrals.direction": ("方向", "Direction"),
    "referrals.none.open": ("没有未完成的转诊。", "No open referral."),
    "direction.up": ("上转", "up"),
    "direction.down": ("下转", "down"),
    "outcome.accepted": ("已接收", "accepted"),
    "outcome.rejected": ("已拒绝", "rejected"),
    "outcome.cancelled": ("已取消", "cancelled"),
    "outcome.completed": ("已完成", "completed"),
    "routing.section": ("区域中心送检", "Orders routed to regional centres"),
    "routing.orderers": ("按开单单位", "By ordering member"),
    "routing.centres": ("按区域中心", "By centre"),
    "routing.routed": ("送检数", "Routed"),
    "routing.resulted": ("已出结果", "Resulted"),
    "routing.delivered": ("结果已送达", "Delivered"),
    "routing.failed": ("失败", "Failed"),
    "routing.cancelled": ("已撤销", "Cancelled"),
    "routing.turnaround": ("周转中位时间（分钟）", "Median turnaround (minutes)"),
    "routing.by.centre": ("各区域中心送检与结果", "Orders and results per centre"),
    "routing.tat.chart": ("各区域中心周转中位时间（分钟）", "Median turnaround per centre (min)"),
    "routing.open": ("未完成的送检", "Open routed orders"),
    "routing.ordered": ("开单时间", "Ordered"),
    "routing.item": ("项目", "Item"),
    "routing.status": ("状态", "Status"),
    "routing.last.error": ("最近错误", "Last error"),
    "routing.none.open": ("没有未完成的送检。", "No open routed order."),
    # feedback
    "feedback.title": ("住院信息每月反馈", "Monthly inpatient feedback"),
    "feedback.centre": ("基层医疗机构", "Primary-care centre"),
    "feedback.sent": ("已发送文档", "Documents sent"),
    "feedback.amended": ("更正", "Amended"),
    "feedback.new": ("首次发送", "First version"),
    "feedback.withdrawn": ("撤回", "Withdrawn"),
    "feedback.pulled": ("已获取", "Pulled"),
    "feedback.exports": ("批量导出", "Bulk exports"),
    "feedback.pulled.note": (
        "“已获取”：通过订阅推送成功送达接收方的文档数；“批量导出”：该机构居民组"
        "（Group/residents-机构）本月完成的 Bulk Data 导出次数。",
        "Pulled: documents delivered to a subscriber by rest-hook; bulk exports: Bulk Data "
        "exports of the centre's residents (Group/residents-<centre>) finished in the month.",
    ),
    "feedback.chart": ("各机构文档：发送与更正", "Documents per centre: sent and amended"),
    "feedback.trend": ("近 12 个月发送文档数", "Documents sent, last 12 months"),
    "feedback.unaddressed": ("无接收机构的住院", "Stays without an addressee"),
    "feedback.unaddressed.none": (
        "本月所有出院均已找到接收机构。",
        "Every stay of the month found its centre.",
    ),
    "feedback.patient": ("患者", "Patient"),
    "feedback.discharged": ("出院时间", "Discharged"),
    "feedback.encounter": ("住院", "Stay"),
    "feedback.runs": ("最近的反馈运行", "Recent feedback runs"),
    "feedback.run.trigger": ("触发方式", "Trigger"),
    "feedback.run.started": ("开始", "Started"),
    "feedback.run.status": ("状态", "Status"),
    "feedback.run.summary": ("结果", "Summary"),
    "feedback.runs.none": ("尚无运行记录。", "No run yet."),
    # reviews
    "reviews.title": ("患者索引待审核", "Patient index: open reviews"),
    "reviews.none": ("没有待审核的疑似同一患者。", "No open review."),
    "reviews.record": ("记录", "Record"),
    "reviews.candidate": ("候选记录", "Candidate"),
    "reviews.score": ("相似度", "Score"),
    "reviews.same": ("是同一人", "Same person"),
    "reviews.different": ("不是同一人", "Different people"),
    "reviews.done": ("已处理", "Decided"),
    "reviews.name": ("姓名", "Name"),
    "reviews.gender": ("性别", "Sex"),
    "reviews.birth": ("出生日期", "Birth date"),
    "reviews.identifiers": ("标识", "Identifiers"),
    "reviews.phone": ("电话", "Phone"),
    "reviews.address": ("地址", "Address"),
    "reviews.created": ("提出时间", "Raised"),
    "reviews.decided.same": ("已确认为同一人并关联。", "Linked as the same person."),
    "reviews.decided.different": ("已确认为不同的人。", "Kept apart as different people."),
    "reviews.already": ("该审核任务已处理。", "This review was already decided."),
    # resource
    "resource.title": ("FHIR 资源", "FHIR resource"),
    "resource.refs": ("引用的资源", "References"),
}


def translator(lang: str) -> Callable[..., str]:
    index = 1 if lang == EN else 0

    def t(key: str, fallback: str | None = None) -> str:
        """``fallback``: what to show for a key made from data that has no words here (a
        status a newer hub added), instead of the key itself."""
        pair = TEXT.get(key)
        if pair:
            return pair[index]
        return fallback if fallback is not None else key

    return t


def pick(raw: str | None) -> str:
    """The language asked for, if it is one of ours; Chinese otherwise."""
    return raw if raw in LANGS else ZH
