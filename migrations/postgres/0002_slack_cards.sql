-- Where each request's approval card was posted, so later notices update it
-- in place instead of posting a new message.
CREATE TABLE slack_cards (
    request_id BIGINT PRIMARY KEY REFERENCES access_requests (id),
    channel    TEXT   NOT NULL,
    ts         TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
