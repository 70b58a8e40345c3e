-- Workflow policies: why a request needed no approvers (auto-approval), a
-- requester's break-glass reason and the review flag it raises, and the
-- deadline after which a pending request times out.
ALTER TABLE access_requests ADD COLUMN auto_approved TEXT;
ALTER TABLE access_requests ADD COLUMN break_glass_reason TEXT;
-- 1 once a break-glass grant happened: someone must look at it afterwards.
ALTER TABLE access_requests ADD COLUMN review_required BIGINT NOT NULL DEFAULT 0;
ALTER TABLE access_requests ADD COLUMN decide_by BIGINT;
CREATE INDEX access_requests_for_review ON access_requests (review_required);
